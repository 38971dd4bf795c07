"""Real vs simulated frames: PSNR and SSIM per horizon.

Both rollouts start from the same context and take the same actions; ``real[:, j]`` and
``sim[:, j]`` are the j-th frame after the context. With ``k`` real frames per latent step,
latent step h ends at frame ``h k - 1``, which is where horizon h is read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from einops import rearrange

from worldsim.metrics import psnr, ssim

HORIZONS = (1, 4, 16, 64)  # latent steps
PSNR_CAP = 100.0  # dB; identical frames have infinite PSNR, capped so means stay finite


def _check(real: np.ndarray, sim: np.ndarray) -> None:
    if real.shape != sim.shape:
        raise ValueError(f"real and simulated frames differ in shape: {real.shape} vs {sim.shape}")
    if real.ndim != 5 or real.shape[-1] != 3:
        raise ValueError(f"expected frames (N, T, H, W, 3), got shape {real.shape}")


def frame_scores(real: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSNR (dB, capped at PSNR_CAP) and SSIM of every frame pair.

    Args:
        real, sim: uint8 (N, T, H, W, 3).
    Returns:
        (psnr (N, T), ssim (N, T)) float64.
    """
    _check(real, sim)
    a = rearrange(torch.from_numpy(np.ascontiguousarray(real)), "n t h w c -> n t c h w")
    b = rearrange(torch.from_numpy(np.ascontiguousarray(sim)), "n t h w c -> n t c h w")
    p = psnr(a, b, data_range=255.0).clamp(max=PSNR_CAP).numpy()
    s = ssim(a, b, data_range=255.0).numpy()
    return p, s


def clip_horizons(horizons: tuple[int, ...], steps: int) -> list[int]:
    """`horizons` no longer than `steps`, plus `steps` itself when a horizon was cut (sorted, unique)."""
    if steps < 1:
        raise ValueError(f"a rollout needs at least one latent step, got {steps}")
    out = sorted({min(h, steps) for h in horizons if h >= 1})
    return out


def _mean_ci(x: np.ndarray) -> dict[str, float]:
    """Mean and a normal-approximation 95% interval over the batch axis."""
    m = float(np.mean(x))
    half = 1.96 * float(np.std(x, ddof=1)) / math.sqrt(len(x)) if len(x) > 1 else 0.0
    return {"mean": m, "ci95": [m - half, m + half]}


def per_horizon(real: np.ndarray, sim: np.ndarray, k: int = 1, horizons: tuple[int, ...] = HORIZONS) -> dict[str, Any]:
    """Per-horizon PSNR and SSIM of simulated against real frames after a shared context.

    Args:
        real, sim: uint8 (N, T, H, W, 3), T = steps x k frames after the context.
        k: real frames per latent step.
        horizons: latent steps at which to read the scores (clipped to the rollout).
    Returns:
        {"horizons": [h...], "psnr": [{mean, ci95}...], "ssim": [...],
         "curve": {"step": [1..steps], "psnr": [...], "ssim": [...]}} (curve: mean per latent step).
    """
    _check(real, sim)
    if real.shape[1] % k:
        raise ValueError(f"{real.shape[1]} frames is not a whole number of latent steps of k={k} frames")
    steps = real.shape[1] // k
    p, s = frame_scores(real, sim)  # (N, T)
    last = np.arange(1, steps + 1) * k - 1  # frame index ending each latent step
    hs = clip_horizons(horizons, steps)
    return {
        "horizons": hs,
        "psnr": [_mean_ci(p[:, h * k - 1]) for h in hs],
        "ssim": [_mean_ci(s[:, h * k - 1]) for h in hs],
        "curve": {"step": list(range(1, steps + 1)), "psnr": p[:, last].mean(0).tolist(),
                  "ssim": s[:, last].mean(0).tolist()},
    }
