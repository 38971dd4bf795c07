"""Image quality metrics on frames: PSNR and SSIM, one value per image.

Inputs are tensors ``(B, ..., C, H, W)`` (any leading axes, e.g. ``(B, T, C, H, W)``); results
have the leading shape ``(B, ...)``, so per-horizon curves are a mean over the batch axis. Both
compute in float64, so uint8 inputs and small differences are exact enough to compare.
``data_range`` is the span of valid values: 2.0 for frames in [-1, 1], 255 for uint8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Wang et al. 2004, "Image quality assessment: from error visibility to structural similarity".
SSIM_WINDOW = 11  # Gaussian window size
SSIM_SIGMA = 1.5  # Gaussian window std (pixels)
SSIM_K1 = 0.01  # C1 = (K1 * L)^2 stabilises the luminance term
SSIM_K2 = 0.03  # C2 = (K2 * L)^2 stabilises the contrast-structure term


def _check_pair(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim < 3:
        raise ValueError(f"{name}: expected (..., C, H, W), got shape {tuple(a.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: ``(B, ..., C, H, W) -> (B, ...)``.

    ``10 * log10(data_range^2 / MSE)`` with the MSE over C, H, W. Identical images give ``inf``
    (no cap: callers averaging over a batch should decide how to treat it).
    """
    _check_pair(a, b, "psnr")
    mse = (a.double() - b.double()).pow(2).flatten(-3).mean(dim=-1)  # (B, ...)
    return 10.0 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1D Gaussian weights ``(size,)`` in float64; the 2D window is its outer product."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004): ``(B, ..., C, H, W) -> (B, ...)``.

    Local statistics under an 11x11 Gaussian window (sigma 1.5), biased (1/N-weighted) variances,
    C1 = (0.01 L)^2, C2 = (0.03 L)^2; the SSIM map is taken over 'valid' window positions only (no
    padding) and averaged over those positions and the channels. Needs H, W >= 11.
    """
    _check_pair(a, b, "ssim")
    *lead, c, h, w = a.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"ssim: frames must be at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    x = a.double().reshape(-1, c, h, w)
    y = b.double().reshape(-1, c, h, w)
    g = gaussian_window().to(x.device)
    gh = g.view(1, 1, SSIM_WINDOW, 1).repeat(c, 1, 1, 1)  # separable: filter along H, then W
    gw = g.view(1, 1, 1, SSIM_WINDOW).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H-10, W-10)
        return F.conv2d(F.conv2d(t, gh, groups=c), gw, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1).reshape(lead)
