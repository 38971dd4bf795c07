"""Token and conditioning embeddings of the diffusion transformer: spacetime patches and noise level."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn


class PatchEmbed(nn.Module):
    """Cut every latent frame into p x p patches (one latent frame deep) and project each to a token."""

    def __init__(self, channels: int, patch: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(channels * patch * patch, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C, h, w) -> (B, T, N, dim) with N = (h / p) * (w / p), patches in row-major order."""
        p = self.patch
        patches = rearrange(x, "b t c (gh p) (gw q) -> b t (gh gw) (p q c)", p=p, q=p)
        return self.proj(patches)


def unpatchify(tokens: Tensor, patch: int, channels: int, grid_h: int) -> Tensor:
    """(B, T, N, p * p * C) -> (B, T, C, h, w); inverse of PatchEmbed's rearrange."""
    return rearrange(tokens, "b t (gh gw) (p q c) -> b t c (gh p) (gw q)", gh=grid_h, p=patch, q=patch, c=channels)


def patch_positions(grid_h: int, grid_w: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Row and column of each of the N = grid_h * grid_w patches, each (N,) long, row-major."""
    rows = torch.arange(grid_h, device=device).repeat_interleave(grid_w)
    cols = torch.arange(grid_w, device=device).repeat(grid_h)
    return rows, cols


class NoiseLevelEmbedder(nn.Module):
    """Embed a noise level t in [0, 1] with sinusoids and an MLP (DiT's TimestepEmbedder)."""

    def __init__(self, dim: int, frequencies: int = 256, scale: float = 1000.0) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.scale = scale  # spreads [0, 1] over the range the sinusoid frequencies were designed for
        self.mlp = nn.Sequential(nn.Linear(frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        """(B, T) in [0, 1] -> (B, T, dim)."""
        half = self.frequencies // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = t.float()[..., None] * self.scale * freqs  # (B, T, half)
        features = torch.cat([args.cos(), args.sin()], dim=-1)  # (B, T, frequencies)
        return self.mlp(features.to(self.mlp[0].weight.dtype))
