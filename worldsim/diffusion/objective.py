"""Training objective: rectified flow with an independent noise level per frame (diffusion forcing).

Parameterisation (Liu et al. 2022, "Flow straight and fast"; Esser et al. 2024, SD3):

    x_t = (1 - t) x0 + t eps,    eps ~ N(0, I),  t in [0, 1] per frame     (forward process)
    v   = eps - x0  = dx_t / dt                                            (velocity target)
    L   = E || model(x_t, t, actions) - v ||^2  over the frames being denoised

Every frame gets its own t (Chen et al. 2024, "Diffusion forcing"), so one network denoises a new
frame given clean, lightly noised or noisy past frames; with probability `context_prob` a sample
starts with a prefix of context frames at noise level <= `context_noise_max`, the pattern a rollout
presents. Context frames carry no diffusion loss: at t ~ 0 their target eps - x0 is unpredictable
noise that would only add variance.

Why rectified flow and not v-prediction: measured with `scripts/compare_objectives.py` (tiny preset,
a synthetic action-controlled latent video: a bright 2x2 square on a 8x8, 4-channel latent moving
one cell per step as the Discrete(5) action says; 3 clean context frames, the next frame sampled
and compared with the true one; same budget of 600 Adam steps, batch 32, T = 4, seeds 0-1, 2-core
CPU). Mean squared error of the sampled frame against the truth (lower is better):

    steps        rectified flow (Euler)   v-prediction, cosine VP (DDIM)
    1            RF_1                     VP_1
    4            RF_4                     VP_4
    16           RF_16                    VP_16

CHOICE_REASON

Reward and termination heads (when the model has them) are trained alongside with MSE and binary
cross-entropy, only on frames that have a target (NaN marks "no target").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class ObjectiveConfig:
    """How noise levels are drawn and how the loss terms are weighted."""

    time_sampling: str = "logit_normal"  # logit_normal (SD3: favours mid noise, where the task is hardest) | uniform
    logit_mean: float = 0.0  # mean of the normal before the sigmoid
    logit_std: float = 1.0  # std of the normal before the sigmoid
    context_prob: float = 0.5  # probability that a sample starts with a context prefix (1 to T-1 frames)
    context_noise_max: float = 0.0  # context frames get t ~ U(0, this): > 0 makes rollouts robust to their own errors
    action_dropout: float = 0.1  # per frame, drop the actions (null embedding) so classifier-free guidance works
    reward_weight: float = 1.0  # weight of the reward MSE
    termination_weight: float = 1.0  # weight of the termination BCE

    def __post_init__(self) -> None:
        if self.time_sampling not in ("logit_normal", "uniform"):
            raise ValueError(f"time_sampling must be 'logit_normal' or 'uniform', got {self.time_sampling!r}")
        for name in ("context_prob", "context_noise_max", "action_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


def add_noise(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = (1 - t) x0 + t eps. x0, noise (B, T, C, h, w); t (B, T) in [0, 1]."""
    t = t[:, :, None, None, None].to(x0.dtype)
    return (1 - t) * x0 + t * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """v = eps - x0, the time derivative of x_t; same shape as x0."""
    return noise - x0


def sample_noise_levels(
    batch: int, frames: int, generator: torch.Generator, config: ObjectiveConfig = ObjectiveConfig()
) -> tuple[Tensor, Tensor]:
    """Independent per-frame noise levels with an optional clean context prefix.

    Returns (noise_level (B, T) float in [0, 1], is_context (B, T) bool), on the generator's device.
    """
    device = generator.device
    if config.time_sampling == "uniform":
        t = torch.rand(batch, frames, generator=generator, device=device)
    else:
        z = torch.randn(batch, frames, generator=generator, device=device)
        t = torch.sigmoid(config.logit_mean + config.logit_std * z)
    has_context = torch.rand(batch, generator=generator, device=device) < config.context_prob
    prefix = torch.randint(1, max(frames, 2), (batch,), generator=generator, device=device) * has_context
    is_context = torch.arange(frames, device=device)[None, :] < prefix[:, None]  # (B, T)
    context_t = torch.rand(batch, frames, generator=generator, device=device) * config.context_noise_max
    return torch.where(is_context, context_t, t), is_context


def diffusion_loss(
    model,
    x0: Tensor,
    actions: Tensor | None,
    action_mask: Tensor | None,
    frame_index: Tensor | None,
    generator: torch.Generator,
    config: ObjectiveConfig = ObjectiveConfig(),
    reward: Tensor | None = None,
    termination: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Rectified-flow loss with per-frame noise levels, plus reward/termination terms.

    model: callable like `DiT.forward` returning an object with `.prediction` (and `.reward`,
        `.termination_logit` when those targets are given).
    x0: (B, T, C, h, w) clean normalised latents. actions (B, T, k, D) / action_mask (B, T, k)
        bool, or None. frame_index (B, T) long or None.
    reward: (B, T) float targets, NaN where a frame has none. termination: (B, T) in {0, 1}, NaN
        where none. All randomness comes from `generator`.
    Returns (scalar loss, logs of floats).
    """
    batch, frames = x0.shape[:2]
    t, is_context = sample_noise_levels(batch, frames, generator, config)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(x0.device)
    t, is_context = t.to(x0.device), is_context.to(x0.device)
    if actions is not None:
        if action_mask is None:
            action_mask = torch.ones(actions.shape[:3], dtype=torch.bool, device=actions.device)
        keep = torch.rand(batch, frames, generator=generator, device=generator.device) >= config.action_dropout
        action_mask = action_mask & keep.to(action_mask.device)[:, :, None]
    out = model(add_noise(x0, noise, t), t, actions, action_mask, frame_index)
    per_frame = (out.prediction.float() - velocity_target(x0, noise).float()).pow(2).mean(dim=(2, 3, 4))  # (B, T)
    weight = (~is_context).float()
    diffusion = (per_frame * weight).sum() / weight.sum().clamp(min=1)
    loss, logs = diffusion, {"diffusion": diffusion.item(), "noise_level": t.mean().item()}
    if reward is not None:
        has = ~torch.isnan(reward)
        term = F.mse_loss(out.reward[has].float(), reward[has].float()) if has.any() else out.reward.sum() * 0
        loss, logs["reward"] = loss + config.reward_weight * term, term.item()
    if termination is not None:
        has = ~torch.isnan(termination)
        term = (
            F.binary_cross_entropy_with_logits(out.termination_logit[has].float(), termination[has].float())
            if has.any() else out.termination_logit.sum() * 0
        )
        loss, logs["termination"] = loss + config.termination_weight * term, term.item()
    logs["loss"] = loss.item()
    return loss, logs
