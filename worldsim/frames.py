"""Frame conversions between the stored / env layout and the model layout.

Stores and Gymnasium observations hold frames as uint8 ``(..., H, W, 3)`` in [0, 255]; every
model in `worldsim` takes float ``(..., 3, H, W)`` in [-1, 1]. These two functions are the only
place that mapping is written down, so the data loader, the autoencoder, the simulator env and
evaluation all agree on it.
"""

from __future__ import annotations

import torch
from einops import rearrange


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., H, W, C)`` in [0, 255] -> float32 ``(..., C, H, W)`` in [-1, 1].

    Typically ``(B, T, H, W, 3) -> (B, T, 3, H, W)``; any number of leading axes works.
    """
    if frames.dtype != torch.uint8:
        raise TypeError(f"frames_to_float expects uint8 frames (..., H, W, C), got dtype {frames.dtype}")
    if frames.ndim < 3:
        raise ValueError(f"frames_to_float expects (..., H, W, C), got shape {tuple(frames.shape)}")
    x = rearrange(frames, "... h w c -> ... c h w").float()
    return x / 127.5 - 1.0


def frames_to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """float ``(..., C, H, W)`` in about [-1, 1] -> uint8 ``(..., H, W, C)`` in [0, 255].

    Values outside [-1, 1] (a decoder overshoots a little) are clipped; rounding is to nearest, so
    ``frames_to_uint8(frames_to_float(u)) == u`` exactly.
    """
    if not frames.is_floating_point():
        raise TypeError(f"frames_to_uint8 expects float frames (..., C, H, W), got dtype {frames.dtype}")
    if frames.ndim < 3:
        raise ValueError(f"frames_to_uint8 expects (..., C, H, W), got shape {tuple(frames.shape)}")
    x = frames.detach().to(torch.float32, copy=True).clamp_(-1.0, 1.0).add_(1.0).mul_(127.5).round_().to(torch.uint8)
    return rearrange(x, "... c h w -> ... h w c").contiguous()
