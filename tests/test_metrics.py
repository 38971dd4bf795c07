"""Tests for PSNR and SSIM on inputs with known answers and against a direct numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worldsim.metrics import psnr, ssim


def smooth_image(c: int, h: int, w: int, seed: int) -> torch.Tensor:
    """A structured image in [0, 1]: low-frequency sinusoids plus a square, ``(c, h, w)``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    chans = []
    for _ in range(c):
        f = torch.rand(4, generator=g) * 4
        img = 0.5 + 0.25 * torch.sin(2 * math.pi * (f[0] * xx + f[1] * yy)) + 0.15 * torch.cos(2 * math.pi * f[2] * xx * yy)
        img[h // 4 : h // 2, w // 3 : w // 2] = f[3] / 4
        chans.append(img)
    return torch.stack(chans).clamp(0, 1)


def reference_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Wang et al. 2004 SSIM of two (C, H, W) images, window by window, written out plainly."""
    half = 5
    ax = np.arange(-half, half + 1, dtype=np.float64)
    g1 = np.exp(-(ax**2) / (2 * 1.5**2))
    win = np.outer(g1, g1)
    win /= win.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for ch in range(x.shape[0]):
        for i in range(half, x.shape[1] - half):
            for j in range(half, x.shape[2] - half):
                px = x[ch, i - half : i + half + 1, j - half : j + half + 1]
                py = y[ch, i - half : i + half + 1, j - half : j + half + 1]
                mx, my = (win * px).sum(), (win * py).sum()
                vx = (win * (px - mx) ** 2).sum()
                vy = (win * (py - my) ** 2).sum()
                cov = (win * (px - mx) * (py - my)).sum()
                values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_identical_frames_give_infinite_psnr_and_ssim_one() -> None:
    x = torch.rand(2, 3, 3, 16, 20)  # (B, T, C, H, W)
    p = psnr(x, x.clone(), data_range=1.0)
    s = ssim(x, x.clone(), data_range=1.0)
    assert p.shape == (2, 3) and s.shape == (2, 3)
    assert torch.isinf(p).all() and (p > 0).all()
    torch.testing.assert_close(s, torch.ones(2, 3, dtype=torch.float64))


def test_constant_offset_gives_analytic_psnr() -> None:
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64) * 200  # float64: x + offset - x is exact enough
    for offset, data_range in [(2.0, 255.0), (0.1, 2.0)]:
        expected = 10 * math.log10(data_range**2 / offset**2)
        torch.testing.assert_close(psnr(x + offset, x, data_range), torch.full((4,), expected, dtype=torch.float64))
    # uint8 input works and is exact: |diff| = 5 everywhere
    u = torch.full((1, 3, 8, 8), 100, dtype=torch.uint8)
    torch.testing.assert_close(psnr(u + 5, u, 255.0), torch.tensor([20 * math.log10(255 / 5)], dtype=torch.float64))


def test_psnr_is_per_image() -> None:
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[1] += 0.5
    p = psnr(x, y, 1.0)
    assert math.isinf(p[0].item())
    assert p[1].item() == pytest.approx(10 * math.log10(1 / 0.25))


def test_ssim_decreases_with_noise_and_is_symmetric() -> None:
    x = smooth_image(3, 32, 32, seed=0)[None]  # (1, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    values = [ssim(x + sigma * noise, x, data_range=1.0).item() for sigma in (0.0, 0.02, 0.05, 0.1, 0.3)]
    assert values[0] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[-1] < 0.5
    y = x + 0.1 * noise
    torch.testing.assert_close(ssim(x, y, 1.0), ssim(y, x, 1.0))


def test_ssim_matches_windowed_numpy_reference() -> None:
    x = smooth_image(2, 18, 21, seed=1)
    g = torch.Generator().manual_seed(1)
    y = (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours = ssim(x[None], y[None], data_range=1.0).item()
    ref = reference_ssim(x.double().numpy(), y.double().numpy(), data_range=1.0)
    assert 0.2 < ref < 0.99  # a case where the terms matter
    assert ours == pytest.approx(ref, abs=1e-10)


def test_ssim_ignores_a_brightness_change_less_than_structure_loss() -> None:
    x = smooth_image(1, 32, 32, seed=2)[None]
    shifted = ssim(x + 0.05, x, 1.0).item()
    blurred = ssim(torch.nn.functional.avg_pool2d(x, 5, 1, 2, count_include_pad=False), x, 1.0).item()
    assert shifted > blurred


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9), 1.0)
    with pytest.raises(ValueError, match="at least 11x11, got 8x8"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), 1.0)
