"""A pixel-space refiner of the simulator's decoded frames, for palette worlds (the probe world).

The DiT predicts a latent; the decoder draws it. Where the world is drawn in a few flat colours (the probe world's
balls have no anti-aliasing), the frames before a step pin every ball's next position to a small fraction of a pixel
(`scripts/probe_motion_bound.py`), and a predictor that reads them exactly draws the next frames more precisely than
the latents do. The refiner reads the last `history` frames as they were shown, the DiT's k decoded frames (the
proposal) and the step's action, and returns palette logits for those k frames. Its logits start as the proposal's
nearness to each colour (its output at initialisation is the proposal snapped to the palette), and a small U-Net
(one stride-2 level, dilated residual blocks) learns the correction, fitted with cross-entropy to the real next
frames of windows whose proposal the shipped simulator drew (`worldsim.train.frame_refiner`).

The simulator only shows the refined frames (`Simulator.step`): its latent context keeps the DiT's own frames, so
what the DiT trained on is what it sees, and a refiner can only change the frames an agent or an evaluation reads.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldsim.models.tagged import load_tagged, save_tagged

FORMAT = "worldsim-frame-refiner-v1"


@dataclass
class FrameRefinerConfig:
    palette: tuple[tuple[int, int, int], ...]  # the world's colours (the palette decoder's)
    action_dim: int  # action channels: the classes of a Discrete space (one-hot), else the packed vector's length
    discrete: bool = True  # packed actions are class indices (one-hot inside) rather than vectors
    history: int = 4  # frames read before the step
    frames: int = 2  # frames per step (the autoencoder's k)
    width: int = 32  # channels at full resolution (twice that at half)


class _Res(nn.Module):
    """GroupNorm, SiLU, dilated 3x3 conv, then again with a plain conv that starts at zero (the block starts as identity)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, channels), nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.n2, self.c2 = nn.GroupNorm(8, channels), nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.c2(F.silu(self.n2(self.c1(F.silu(self.n1(x))))))


class FrameRefiner(nn.Module):
    def __init__(self, cfg: FrameRefinerConfig):
        super().__init__()
        self.cfg = cfg
        k, w = len(cfg.palette), cfg.width
        self.register_buffer("colours", torch.tensor(cfg.palette, dtype=torch.float32), persistent=False)  # (K, 3)
        self.inp = nn.Conv2d(3 * cfg.history + (3 + k) * cfg.frames + cfg.action_dim, w, 3, padding=1)
        self.full = nn.Sequential(_Res(w, 1), _Res(w, 2))
        self.down = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.low = nn.Sequential(_Res(2 * w, 1), _Res(2 * w, 2), _Res(2 * w, 4), _Res(2 * w, 1))
        self.up = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.after = nn.Sequential(_Res(w, 1), _Res(w, 2))
        self.out = nn.Conv2d(w, k * cfg.frames, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.keep = nn.Parameter(torch.ones(1))  # weight of the proposal's nearness to each colour

    def nearness(self, frames: Tensor) -> Tensor:
        """uint8 (B, T, H, W, 3) -> (B, T, K, H, W): -|x - c|^2 / 1000 for each colour c (0 at x's own colour)."""
        d = ((frames.float()[..., None, :] - self.colours) ** 2).sum(-1) / 1000
        return -d.permute(0, 1, 4, 2, 3)

    def classes(self, frames: Tensor) -> Tensor:
        """uint8 (B, T, H, W, 3) -> (B, T, H, W): index of each pixel's nearest colour."""
        return self.nearness(frames).argmax(2)

    def forward(self, history: Tensor, proposal: Tensor, actions: Tensor) -> Tensor:
        """history uint8 (B, history, H, W, 3), proposal uint8 (B, frames, H, W, 3), actions packed (B, D) ->
        logits (B, frames, K, H, W)."""
        cfg = self.cfg
        if history.shape[1] != cfg.history or proposal.shape[1] != cfg.frames or history.shape[2:] != proposal.shape[2:]:
            raise ValueError(f"the refiner reads {cfg.history} frames before the step and {cfg.frames} proposed, of one "
                             f"size; got {tuple(history.shape)} and {tuple(proposal.shape)}")
        b, _, h, w, _ = history.shape
        frames = torch.cat([history, proposal], 1).float().div(127.5).sub(1)  # (B, T, H, W, 3) in [-1, 1]
        near = self.nearness(proposal)
        act = F.one_hot(actions[:, 0].long(), cfg.action_dim).float() if cfg.discrete else actions.float()
        x = torch.cat([frames.permute(0, 1, 4, 2, 3).reshape(b, -1, h, w), near.reshape(b, -1, h, w),
                       act[:, :, None, None].expand(b, cfg.action_dim, h, w)], 1)
        s = self.full(self.inp(x))
        y = self.after(self.up(self.low(self.down(s))) + s)
        return self.out(y).reshape(b, cfg.frames, -1, h, w) + self.keep * near

    def expected(self, logits: Tensor) -> Tensor:
        """Logits (B, T, K, H, W) -> float (B, T, H, W, 3) in [0, 255]: each pixel's expected colour (what squared
        error prefers)."""
        return torch.einsum("btkhw,kc->bthwc", logits.float().softmax(2), self.colours)

    def frames_from(self, logits: Tensor) -> Tensor:
        """Logits (B, T, K, H, W) -> uint8 (B, T, H, W, 3): the expected colour, rounded."""
        return self.expected(logits).round().clamp(0, 255).to(torch.uint8)

    @torch.no_grad()
    def refine(self, history: Tensor, proposal: Tensor, actions: Tensor) -> Tensor:
        return self.frames_from(self(history, proposal, actions))


def save_frame_refiner(path: str | os.PathLike, net: FrameRefiner, extra: dict[str, Any] | None = None) -> None:
    save_tagged(path, net, FORMAT, asdict(net.cfg), extra)


def load_frame_refiner(path: str | os.PathLike) -> tuple[FrameRefiner, dict[str, Any]]:
    """(refiner in eval mode, extra) from a file written by `save_frame_refiner`; ValueError for another file."""
    def build(raw: dict[str, Any]) -> FrameRefiner:
        return FrameRefiner(FrameRefinerConfig(**{**raw, "palette": tuple(tuple(c) for c in raw["palette"])}))

    return load_tagged(path, FORMAT, "a frame refiner", build)


def export_refiner(folder: str | os.PathLike, frames: int, palette: tuple | list | None,
                   device: torch.device | str = "cpu") -> FrameRefiner | None:
    """The export's refiner (`refiner.safetensors` beside its weights) on `device`, or None when it has none.

    Raises:
        ValueError: a refiner drawn for another autoencoder (other k or palette).
    """
    path = os.path.join(folder, "refiner.safetensors")
    if not os.path.isfile(path):
        return None
    net = load_frame_refiner(path)[0]
    if net.cfg.frames != frames or [tuple(c) for c in (palette or ())] != [tuple(c) for c in net.cfg.palette]:
        raise ValueError(f"{path} refines {net.cfg.frames} frames a step in {len(net.cfg.palette)} colours; this "
                         f"export's autoencoder draws {frames} in {len(palette or ())} (files from different runs?)")
    return net.to(device)


def refine_shown(net: FrameRefiner, shown: list, drawn: Tensor, actions: Any | None) -> tuple[Tensor, list]:
    """One simulator step's frames through the refiner: drawn uint8 (B, k, H, W, 3) and each track's last shown frames
    (uint8 (history, H, W, 3)) -> (the frames to show, each track's shown frames moved on). Without actions (continuing
    footage) the drawn frames are shown as they are."""
    if actions is not None:
        history = torch.from_numpy(np.stack(shown)).to(drawn.device)
        drawn = net.refine(history, drawn, torch.as_tensor(np.asarray(actions), device=drawn.device))
    return drawn, moved_on(shown, drawn.cpu().numpy())


def moved_on(shown: list, frames: np.ndarray) -> list:
    """Each track's last shown frames (h, H, W, 3) followed by its new ones (k, H, W, 3): the last h of them."""
    return [np.concatenate([s, f])[-len(s):] for s, f in zip(shown, frames)]


def first_shown(history: int, frames: np.ndarray) -> np.ndarray:
    """A reset's context frames uint8 (T, H, W, 3) -> the last `history` of them, the first repeated in front when
    there are fewer: what a refiner reads before the first step."""
    frames = np.asarray(frames)
    return np.concatenate([np.repeat(frames[:1], max(0, history - len(frames)), axis=0), frames])[-history:].copy()
