"""Decoding to a palette: for worlds drawn with a few exact colours, the decoder picks one per pixel.

The probe world draws every frame with 9 colours. A decoder trained to regress RGB is paid for a
pixel halfway between two colours almost as well as for the right one, so its frames keep soft edges
and faint ghosts (2% of pixels nearer a wrong colour after 11,000 steps). `PaletteHead` turns the
decoder's RGB output into logits over the palette and returns the expected colour; the loss adds a
per-pixel cross-entropy against the true colour's index, which pays only for the right colour.

The logits start as ``-sharpness * |rgb - colour|^2`` (expanded, this is linear in the RGB output,
so nothing about the decoder changes at a warm start but the snapping) plus a learned correction from
the decoder's last features that starts at zero. The head is per pixel, so streaming decode (one
latent frame at a time) stays exact.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

MAX_COLOURS = 32  # more distinct colours than this is a textured world: regress RGB instead
MIN_COVERAGE = 0.999  # the palette must draw this share of the pixels seen


def palette_tensor(palette: tuple[tuple[int, int, int], ...]) -> torch.Tensor:
    """uint8 RGB triples -> float (K, 3) in [-1, 1], the frames' range."""
    return torch.tensor(palette, dtype=torch.float32) / 127.5 - 1.0


class PaletteHead(nn.Module):
    """The decoder's last convolution's output and features, at patch resolution -> expected colour and palette logits.

    Both inputs stay in the patched layout ``(B, X * p * p, T, H/p, W/p)``, channels ``(x p1 p2)`` as the decoder's
    ``conv_out`` emits them: the nearness to each colour and the correction are ONE 1x1x1 convolution there, the
    softmax runs over the colours of each sub-pixel, and only the 3-channel result (and the logits, when asked) is
    unfolded to full resolution. The same logits as computing at full resolution, 3 times faster on a CPU.
    """

    def __init__(self, palette: tuple[tuple[int, int, int], ...], feature_channels: int, patch: int,
                 sharpness: float = 4.0):
        super().__init__()
        self.patch = patch
        self.register_buffer("colours", palette_tensor(palette), persistent=False)  # (K, 3); the config holds it
        self.log_sharpness = nn.Parameter(torch.full((1,), math.log(sharpness)))  # (1,): DeepSpeed cannot broadcast a 0-d parameter
        self.correction = nn.Conv3d(feature_channels, len(palette) * patch**2, 1)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """(B, X * p * p, T, h, w) in ``(x p1 p2)`` order -> (B, X, T, h * p, w * p)."""
        return rearrange(x, "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=self.patch, p2=self.patch)

    def patched_logits(self, rgb: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """(B, K * p * p, T, h, w) logits in ``(k p1 p2)`` order: sharpness * (2 rgb.c - |c|^2) + correction.

        -|x - c|^2 = 2 x.c - |c|^2 - |x|^2, and the last term is the same for every colour, so it drops out: the
        nearness is linear in the RGB output and joins the correction in one product (block-diagonal over the
        p * p sub-pixels). A batched matrix product, not a 1x1x1 convolution: 7 times faster on a CPU.
        """
        c = self.colours.to(rgb.dtype)  # (K, 3)
        subpixels = self.patch**2
        eye = torch.eye(subpixels, dtype=rgb.dtype, device=rgb.device)
        near = torch.einsum("kc,qr->kqcr", 2.0 * c, eye).reshape(len(c) * subpixels, 3 * subpixels)  # (k q) x (c r)
        scale = self.log_sharpness.exp().to(rgb.dtype)
        weight = torch.cat([scale * near, self.correction.weight.flatten(1).to(rgb.dtype)], dim=1)
        bias = self.correction.bias.to(rgb.dtype) - scale * c.pow(2).sum(-1).repeat_interleave(subpixels)
        b, _, t, h, w = rgb.shape
        inputs = torch.cat([rgb, features.to(rgb.dtype)], dim=1).view(b, weight.shape[1], t * h * w)
        return torch.baddbmm(bias[None, :, None], weight.expand(b, -1, -1), inputs).view(b, -1, t, h, w)

    def forward(self, rgb: torch.Tensor, features: torch.Tensor,
                logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns (expected colour (B, 3, T, H, W), logits (B, K, T, H, W) or None without `logits`)."""
        b, _, t, h, w = rgb.shape
        patched = self.patched_logits(rgb, features)  # (B, K p p, T, h, w)
        k, subpixels = len(self.colours), self.patch**2
        probs = patched.view(b, k, subpixels, t, h, w).softmax(dim=1).view(b, k * subpixels, t * h * w)
        c = self.colours.to(probs.dtype)
        eye = torch.eye(subpixels, dtype=c.dtype, device=c.device)
        expect = torch.einsum("kc,qr->cqkr", c, eye).reshape(3 * subpixels, k * subpixels)  # (c q) x (k r)
        colour = torch.matmul(expect, probs).view(b, 3 * subpixels, t, h, w)
        return self.unfold(colour), (self.unfold(patched) if logits else None)


def palette_targets(frames: torch.Tensor, palette: tuple[tuple[int, int, int], ...]) -> torch.Tensor:
    """Frames ``(B, T, 3, H, W)`` in [-1, 1] -> index of each pixel's nearest palette colour, int64 (B, T, H, W)."""
    c = palette_tensor(palette).to(frames.device, frames.dtype)  # (K, 3)
    dist = (frames.unsqueeze(2) - c[None, None, :, :, None, None]).pow(2).sum(dim=3)  # (B, T, K, H, W)
    return dist.argmin(dim=2)


def find_palette(frames: np.ndarray, max_colours: int = MAX_COLOURS) -> tuple[tuple[int, int, int], ...]:
    """The distinct colours of uint8 frames ``(..., 3)``, most frequent first; ValueError for a textured world.

    A colour counts when it draws at least 1 in 100,000 pixels (a stray blend is noise), and the
    colours kept must draw `MIN_COVERAGE` of all pixels.
    """
    pixels = np.ascontiguousarray(frames).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    colours, counts = colours[order], counts[order]
    keep = counts >= max(1, len(pixels) // 100_000)
    coverage = counts[keep].sum() / len(pixels)
    if keep.sum() > max_colours or coverage < MIN_COVERAGE:
        raise ValueError(f"the frames are not drawn from a small palette: {int(keep.sum())} frequent colours "
                         f"(at most {max_colours}) drawing {coverage:.2%} of the pixels (need {MIN_COVERAGE:.1%}); "
                         "leave palette unset for this world")
    return tuple(tuple(int(v) for v in c) for c in colours[keep])
