"""Real vs simulated frames: PSNR and SSIM per horizon.

Both rollouts start from the same context and take the same actions; ``real[:, j]`` and
``sim[:, j]`` are the j-th frame after the context. With ``k`` real frames per latent step,
latent step h ends at frame ``h k - 1``, which is where horizon h is read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


# Two-sided 95% Student t quantiles by degrees of freedom (no scipy); beyond 30 the normal 1.96.
T95 = {1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
       20: 2.086, 25: 2.060, 30: 2.042}


def mean_ci95(x: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Mean and a Student-t 95% interval of the mean of `x` (one value per episode or seed).

    Student t rather than the normal 1.96: the samples are a few episodes or seeds, where 1.96 is
    far too narrow (t = 12.7 for two values). Between table rows the smaller df (wider interval)
    is used. One value gives the point interval [m, m].
    """
    a = np.asarray(x, np.float64)
    m = float(a.mean())
    if len(a) < 2:
        return {"mean": m, "ci95": [m, m]}
    df = len(a) - 1
    t = T95.get(df) or (T95[max(k for k in T95 if k <= df)] if df <= 30 else 1.96)
    half = t * float(a.std(ddof=1)) / math.sqrt(len(a))
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
        "psnr": [mean_ci95(p[:, h * k - 1]) for h in hs],
        "ssim": [mean_ci95(s[:, h * k - 1]) for h in hs],
        "curve": {"step": list(range(1, steps + 1)), "psnr": p[:, last].mean(0).tolist(),
                  "ssim": s[:, last].mean(0).tolist()},
    }
