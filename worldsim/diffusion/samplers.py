"""Samplers for the v-prediction model: pure, seeded functions of (denoiser, context, actions, steps).

The network predicts v (see `worldsim.diffusion.objective`), i.e. a clean estimate
x0_hat = alpha_t x_t - sigma_t v. In the variables y = x_t / sigma_t and tau = alpha_t / sigma_t the
probability-flow ODE loses its linear term (Song et al. 2021, "DDIM", eq. 14):

    dy / dtau = x0_hat(x_t, t),   from t = 1 (tau = 0, x_1 ~ N(0, I)) to t = 0 (tau = inf).

An Euler step of it is exactly DDIM with eta = 0 (Song et al. eq. 12), written without dividing
by sigma_next so that the last step lands on t = 0:

    x_next = (sigma_next / sigma) x + (alpha_next - sigma_next alpha / sigma) x0_hat.

Heun's method (Karras et al. 2022, "EDM", Algorithm 1) corrects each step with the trapezoid
rule on the same ODE, using the mean of x0_hat at both ends; like EDM it skips the correction on
the step that lands on clean data, so the network is never evaluated at t = 0.

Only the NEW frames are integrated; context frames are passed along unchanged at noise level
`context_noise_level` (0: clean), so the denoiser sees [context, new] as in training. With a
key/value cache the context lives in the cache instead (`context=None`, the denoiser a
`functools.partial(model, cache=cache)`).

Classifier-free guidance on actions (Ho & Salimans 2022, eq. 6, applied to v, which is linear in
the noise prediction at fixed x_t):

    v = v_uncond + w (v_cond - v_uncond),

where the unconditional pass masks the new frames' actions (the model saw per-frame action
dropout in training). w = 1 is plain conditional sampling and costs one evaluation.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from worldsim.diffusion.objective import predict_x0, schedule


class Denoiser(Protocol):
    """Anything called like `DiT.forward`: returns v (B, T, C, h, w) or an object with `.prediction`."""

    def __call__(self, x: Tensor, noise_level: Tensor, actions: Tensor | None, action_mask: Tensor | None,
                 frame_index: Tensor | None) -> Any: ...


def time_grid(steps: int, shift: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """steps + 1 noise levels from 1 down to 0, float64.

    shift > 1 spends more steps at high noise (the timestep shift of Esser et al. 2024, eq. 23:
    t' = s t / (1 + (s - 1) t)); shift = 1 is uniform in t, i.e. in the angle of the cosine schedule.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)
    return shift * u / (1 + (shift - 1) * u)


def _ddim(x: Tensor, x0_hat: Tensor, t: float, t_next: float) -> Tensor:
    """DDIM step (eta = 0) from level t > 0 to t_next >= 0 given the clean estimate x0_hat."""
    alpha, sigma = schedule(torch.tensor(t, dtype=torch.float64))
    alpha_next, sigma_next = schedule(torch.tensor(t_next, dtype=torch.float64))
    ratio = float(sigma_next / sigma)
    return ratio * x + float(alpha_next - ratio * alpha) * x0_hat


def _x0(denoiser, x: Tensor, t: float, *args) -> Tensor:
    """Clean estimate of the new frames (B, T_new, C, h, w) at level t from the guided v prediction."""
    v = _guided_v(denoiser, x, t, *args)
    return predict_x0(x, v, torch.full(x.shape[:2], t, dtype=torch.float64, device=x.device))


def _guided_v(denoiser, x_new: Tensor, t: float, context: Tensor | None, context_noise_level: float,
              actions: Tensor | None, action_mask: Tensor | None, frame_index: Tensor | None,
              guidance_scale: float) -> Tensor:
    """Guided v prediction of the new frames (B, T_new, C, h, w) at noise level t."""
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


def _prepare(shape, generator, noise, context, actions, action_mask, guidance_scale, device):
    if len(shape) != 5:
        raise ValueError(f"shape must be (B, T_new, C, h, w), got {tuple(shape)}")
    if (generator is None) == (noise is None):
        raise ValueError("give exactly one of `generator` (to draw the initial noise) and `noise`")
    if noise is not None and tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
    if actions is not None and action_mask is None:
        action_mask = torch.ones(actions.shape[:3], dtype=torch.bool, device=actions.device)
    if guidance_scale != 1.0 and actions is None:
        raise ValueError("classifier-free guidance (guidance_scale != 1) needs actions")
    if device is None:
        device = context.device if context is not None else (noise if noise is not None else generator).device
    if noise is None:
        noise = torch.randn(tuple(shape), generator=generator, device=generator.device)
    return noise.to(device), action_mask  # x_1 ~ N(0, I)


def sample(
    denoiser: Denoiser,
    shape: tuple[int, ...],
    *,
    steps: int,
    method: str = "euler",
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    context: Tensor | None = None,
    actions: Tensor | None = None,
    action_mask: Tensor | None = None,
    frame_index: Tensor | None = None,
    guidance_scale: float = 1.0,
    context_noise_level: float = 0.0,
    shift: float = 1.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Generate new frames: DDIM (method "euler", one evaluation per step) or Heun's correction ("heun").

    One loop, Heun's correction as a branch, as in EDM's `edm_sampler` (Karras et al. 2022,
    Algorithm 1). "heun" takes two evaluations per step except the last, which is a plain DDIM step
    as in EDM (the objective puts little weight on t ~ 0, so the network is not asked there):
    2 * steps - 1 evaluations, times two with guidance.

    shape: (B, T_new, C, h, w) of the new frames. context: (B, T_ctx, C, h, w) clean latents or
    None. actions (B, T_ctx + T_new, k, D), action_mask (B, T_ctx + T_new, k) bool and frame_index
    (B, T_ctx + T_new) cover context and new frames (or only the new ones with a cache). The initial
    noise is drawn from `generator` (on its device), or given as `noise` (shape `shape`), e.g. drawn
    per sample from separate generators; nothing else is random, so the result is a pure function of
    the arguments. Returns (B, T_new, C, h, w) float32 latents.
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    x, action_mask = _prepare(shape, generator, noise, context, actions, action_mask, guidance_scale, device)
    args = (context, context_noise_level, actions, action_mask, frame_index, guidance_scale)
    ts = time_grid(steps, shift).tolist()
    for t_cur, t_next in zip(ts[:-1], ts[1:]):
        x0_hat = _x0(denoiser, x, t_cur, *args)
        x_next = _ddim(x, x0_hat, t_cur, t_next)  # Euler on dy/dtau = x0_hat (DDIM, eq. 12); Alg. 1, line 5
        if method == "heun" and t_next > 0:  # Alg. 1, line 6: no correction on the step that lands on clean data
            x0_next = _x0(denoiser, x_next, t_next, *args)
            x_next = _ddim(x, 0.5 * (x0_hat + x0_next), t_cur, t_next)  # Alg. 1, line 8: trapezoid rule
        x = x_next
    return x


def sample_euler(denoiser: Denoiser, shape: tuple[int, ...], **kwargs: Any) -> Tensor:
    """`sample` with method "euler" (DDIM): one evaluation per step."""
    return sample(denoiser, shape, method="euler", **kwargs)


def sample_heun(denoiser: Denoiser, shape: tuple[int, ...], **kwargs: Any) -> Tensor:
    """`sample` with method "heun": 2 * steps - 1 evaluations."""
    return sample(denoiser, shape, method="heun", **kwargs)
