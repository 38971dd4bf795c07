"""Samplers for the rectified-flow model: pure, seeded functions of (denoiser, context, actions, steps).

The probability-flow ODE of rectified flow (Liu et al. 2022, eq. 1) is

    dx_t / dt = v(x_t, t),   t from 1 (x_1 ~ N(0, I)) down to 0 (data),

with v the velocity predicted by the network. Only the NEW frames are integrated; context frames
are passed along unchanged at noise level `context_noise_level` (0: clean), so the denoiser sees
[context, new] exactly as in training. With a key/value cache the context lives in the cache
instead (`context=None`, the denoiser a `functools.partial(model, cache=cache)`).

Classifier-free guidance on actions (Ho & Salimans 2022, eq. 6, in velocity form):

    v = v_uncond + w (v_cond - v_uncond),

where the unconditional pass masks the new frames' actions (the model saw per-frame action
dropout in training). w = 1 is plain conditional sampling and costs one evaluation.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor


class Denoiser(Protocol):
    """Anything called like `DiT.forward`: returns the velocity (B, T, C, h, w) or an object with `.prediction`."""

    def __call__(self, x: Tensor, noise_level: Tensor, actions: Tensor | None, action_mask: Tensor | None,
                 frame_index: Tensor | None) -> Any: ...


def time_grid(steps: int, shift: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """steps + 1 noise levels from 1 down to 0, float64.

    shift > 1 spends more steps at high noise (SD3, Esser et al. 2024, eq. 23:
    t' = s t / (1 + (s - 1) t)); shift = 1 is the uniform grid.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)
    return shift * u / (1 + (shift - 1) * u)


def _velocity(denoiser, x_new: Tensor, t: float, context: Tensor | None, context_noise_level: float,
              actions: Tensor | None, action_mask: Tensor | None, frame_index: Tensor | None,
              guidance_scale: float) -> Tensor:
    """Guided velocity of the new frames (B, T_new, C, h, w) at noise level t."""
    new = x_new.shape[1]
    x = x_new if context is None else torch.cat([context, x_new.to(context.dtype)], dim=1)  # (B, T, C, h, w)
    level = torch.full(x.shape[:2], t, dtype=torch.float32, device=x.device)
    level[:, : x.shape[1] - new] = context_noise_level

    def predict(mask: Tensor | None) -> Tensor:
        out = denoiser(x, level, actions, mask, frame_index)
        return getattr(out, "prediction", out)[:, -new:].float()

    v = predict(action_mask)
    if guidance_scale != 1.0:
        uncond_mask = action_mask.clone()
        uncond_mask[:, -new:] = False
        v_uncond = predict(uncond_mask)
        v = v_uncond + guidance_scale * (v - v_uncond)  # CFG, eq. 6 of Ho & Salimans
    return v


def _prepare(shape, generator, context, actions, action_mask, guidance_scale, device):
    if len(shape) != 5:
        raise ValueError(f"shape must be (B, T_new, C, h, w), got {tuple(shape)}")
    if actions is not None and action_mask is None:
        action_mask = torch.ones(actions.shape[:3], dtype=torch.bool, device=actions.device)
    if guidance_scale != 1.0 and actions is None:
        raise ValueError("classifier-free guidance (guidance_scale != 1) needs actions")
    if device is None:
        device = context.device if context is not None else generator.device
    x = torch.randn(tuple(shape), generator=generator, device=generator.device).to(device)  # x_1 ~ N(0, I)
    return x, action_mask


def sample_euler(
    denoiser: Denoiser,
    shape: tuple[int, ...],
    *,
    steps: int,
    generator: torch.Generator,
    context: Tensor | None = None,
    actions: Tensor | None = None,
    action_mask: Tensor | None = None,
    frame_index: Tensor | None = None,
    guidance_scale: float = 1.0,
    context_noise_level: float = 0.0,
    shift: float = 1.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Generate new frames with Euler steps of the probability-flow ODE (one evaluation per step).

    shape: (B, T_new, C, h, w) of the new frames. context: (B, T_ctx, C, h, w) clean latents or
    None. actions (B, T_ctx + T_new, k, D), action_mask (B, T_ctx + T_new, k) bool and frame_index
    (B, T_ctx + T_new) cover context and new frames (or only the new ones with a cache). The initial
    noise is drawn from `generator` (on its device), so the result is a pure function of the
    arguments. Returns (B, T_new, C, h, w) float32 latents.
    """
    x, action_mask = _prepare(shape, generator, context, actions, action_mask, guidance_scale, device)
    ts = time_grid(steps, shift).tolist()
    for t_cur, t_next in zip(ts[:-1], ts[1:]):
        v = _velocity(denoiser, x, t_cur, context, context_noise_level, actions, action_mask, frame_index, guidance_scale)
        x = x + (t_next - t_cur) * v  # Euler: x_{t'} = x_t + (t' - t) v(x_t, t)
    return x


def sample_heun(
    denoiser: Denoiser,
    shape: tuple[int, ...],
    *,
    steps: int,
    generator: torch.Generator,
    context: Tensor | None = None,
    actions: Tensor | None = None,
    action_mask: Tensor | None = None,
    frame_index: Tensor | None = None,
    guidance_scale: float = 1.0,
    context_noise_level: float = 0.0,
    shift: float = 1.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Generate new frames with Heun's second-order method (Karras et al. 2022, Algorithm 1).

    Two evaluations per step except the last, which is a plain Euler step as in EDM: the velocity
    at t = 0 is singular for concentrated data (v = (x_t - x0) / t) and the objective puts little
    weight there, so the network is not asked for it. 2 * steps - 1 evaluations (times two with
    guidance). Arguments and result as in `sample_euler`.
    """
    x, action_mask = _prepare(shape, generator, context, actions, action_mask, guidance_scale, device)
    ts = time_grid(steps, shift).tolist()
    for t_cur, t_next in zip(ts[:-1], ts[1:]):
        v = _velocity(denoiser, x, t_cur, context, context_noise_level, actions, action_mask, frame_index, guidance_scale)
        x_next = x + (t_next - t_cur) * v  # Alg. 1, line 5: Euler predictor
        if t_next > 0:  # Alg. 1, line 6: no correction on the step that lands on clean data
            v_next = _velocity(denoiser, x_next, t_next, context, context_noise_level, actions, action_mask,
                               frame_index, guidance_scale)
            x_next = x + (t_next - t_cur) * 0.5 * (v + v_next)  # Alg. 1, line 8: trapezoidal corrector
        x = x_next
    return x
