"""Action following: an inverse-dynamics model (IDM) trained on real episodes.

A small CNN reads two consecutive frames and predicts the action taken between them. Trained on
real data, its accuracy on real held-out frames is the reference; its accuracy on simulated
frames (driven by the same actions) says how well the simulator follows actions. The gap is the
metric (as in MineWorld). Discrete action spaces only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F


@dataclass
class IDMConfig:
    """Size and training budget of the inverse-dynamics model."""

    channels: int = 32  # width of the first conv layer (then 2x)
    steps: int = 400  # optimiser steps
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


class InverseDynamics(nn.Module):
    """Two frames -> action logits: ``(B, 2, H, W, 3)`` uint8 -> ``(B, n_actions)``.

    The input stacks both frames and their difference (9 channels in [-1, 1]); three stride-2
    convolutions, then global average and max pooling, so any frame size works.
    """

    def __init__(self, n_actions: int, channels: int = 32):
        super().__init__()
        c = channels
        self.convs = nn.Sequential(
            nn.Conv2d(9, c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), nn.GELU(),
        )
        self.head = nn.Linear(4 * c, n_actions)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        x = pairs.float() / 127.5 - 1.0  # (B, 2, H, W, 3) in [-1, 1]
        x = rearrange(x, "b two h w c -> b two c h w")
        x = torch.cat([x[:, 0], x[:, 1], x[:, 1] - x[:, 0]], dim=1)  # (B, 9, H, W)
        h = self.convs(x)  # (B, 2c, H/8, W/8)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 4c)
        return self.head(pooled)


def frame_pairs(frames: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive-frame pairs of episodes.

    Args:
        frames: uint8 (E, T + 1, H, W, 3); actions: int (E, T), actions[:, t] led from frame t to t + 1.
    Returns:
        (pairs uint8 (E T, 2, H, W, 3), labels int64 (E T,)).
    """
    if frames.ndim != 5 or actions.shape != frames.shape[:1] + (frames.shape[1] - 1,):
        raise ValueError(f"expected frames (E, T + 1, H, W, 3) and actions (E, T), got {frames.shape} and {actions.shape}")
    pairs = np.stack([frames[:, :-1], frames[:, 1:]], axis=2)  # (E, T, 2, H, W, 3)
    return pairs.reshape(-1, *pairs.shape[2:]), actions.reshape(-1).astype(np.int64)


def pairs_from_store(store, episodes: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frame pairs and their actions from an `EpisodeStore` with a Discrete action space.

    Row t of an episode holds obs_t and the action that led to it, so pair (t - 1, t) has label
    ``action[t]``; rows without an action are skipped.
    """
    space = store.action_space
    if not isinstance(space, spaces.Discrete):
        raise ValueError(f"the inverse-dynamics model needs a Discrete action space; {store.path} records {space}")
    pairs, labels = [], []
    for i in range(store.num_episodes) if episodes is None else episodes:
        ep = store.episode(i)
        has = ep["has_action"].astype(bool)[1:]  # (T,)
        p = np.stack([ep["obs"][:-1], ep["obs"][1:]], axis=1)[has]  # (T', 2, H, W, 3)
        pairs.append(p)
        labels.append(ep["action"][1:, 0][has].astype(np.int64) + int(space.start))
    if not pairs:
        raise ValueError(f"{store.path}: no episodes to train the inverse-dynamics model on")
    return np.concatenate(pairs), np.concatenate(labels) - int(space.start)


def random_play_pairs(env, episodes: int, frames: int, hold: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame pairs and actions of `episodes` random-policy episodes of the real `env` (seeds 0, 1, ...), `frames`
    frames each, every action held `hold` frames: the judge's training data in `worldsim eval`. Episodes that end
    early still give their pairs."""
    from worldsim.agents import make_policy
    from worldsim.eval.episodes import roll_real

    rolled = [roll_real(env, make_policy("random", env.action_space, 1, seed=s), frames, seed=s, hold=hold)
              for s in range(episodes)]
    parts = [frame_pairs(ep.frames[None], np.asarray(ep.actions)[None]) for ep in rolled if len(ep.actions)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def train_idm(pairs: np.ndarray, labels: np.ndarray, n_actions: int, cfg: IDMConfig | None = None) -> InverseDynamics:
    """Fit an `InverseDynamics` model to frame pairs (E, 2, H, W, 3) and labels in [0, n_actions)."""
    cfg = cfg or IDMConfig()
    if len(pairs) != len(labels) or len(pairs) == 0:
        raise ValueError(f"need as many labels as frame pairs (> 0), got {len(pairs)} pairs and {len(labels)} labels")
    if labels.min() < 0 or labels.max() >= n_actions:
        raise ValueError(f"labels must lie in [0, {n_actions}), got [{labels.min()}, {labels.max()}]")
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = InverseDynamics(n_actions, cfg.channels)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    x, y = torch.from_numpy(pairs), torch.from_numpy(labels)
    model.train()
    for _ in range(cfg.steps):
        idx = torch.randint(len(x), (min(cfg.batch_size, len(x)),), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def idm_accuracy(model: InverseDynamics, pairs: np.ndarray, labels: np.ndarray, batch: int = 256,
                 only: tuple[int, ...] | None = None) -> float:
    """Fraction of pairs whose predicted action is the true one; `only`: of the pairs labelled with these actions.

    Many actions change nothing visible in most states (Crafter's crafting without materials), so
    the accuracy on actions that always act (the moves) is the discriminating figure there. NaN
    when `only` leaves no pair.
    """
    if len(pairs) == 0:
        raise ValueError("no frame pairs to score")
    if only is not None:
        keep = np.isin(labels, np.asarray(only))
        if not keep.any():
            return float("nan")
        pairs, labels = pairs[keep], labels[keep]
    hits = 0
    for i in range(0, len(pairs), batch):
        pred = model(torch.from_numpy(pairs[i:i + batch])).argmax(dim=1).numpy()
        hits += int((pred == labels[i:i + batch]).sum())
    return hits / len(pairs)
