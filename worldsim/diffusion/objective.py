"""Training objective: v-prediction on a cosine schedule, one noise level per frame (diffusion forcing).

Parameterisation (Salimans & Ho 2022, "Progressive distillation", sec. 4 and appendix D), with the
noise level t in [0, 1] mapped to an angle phi = pi t / 2:

    alpha_t = cos(phi),  sigma_t = sin(phi)                                (cosine schedule)
    x_t = alpha_t x0 + sigma_t eps,    eps ~ N(0, I),  t per frame          (forward process)
    v   = alpha_t eps - sigma_t x0   (= dx_t / dphi)                         (network target)
    L   = E || model(x_t, t, actions) - v ||^2  over the frames being denoised

t = 0 is clean data, t = 1 pure noise (alpha = 0), as everywhere in worldsim. The prediction
converts to the clean estimate x0 = alpha x_t - sigma v and the noise eps = sigma x_t + alpha v
(`predict_x0`, `predict_noise`), which the samplers integrate.

Every frame gets its own t (Chen et al. 2024, "Diffusion forcing"), so one network denoises a new
frame given clean, lightly noised or noisy past frames; with probability `context_prob` a sample
starts with a prefix of context frames at noise level <= `context_noise_max`, the pattern a rollout
presents. Context frames carry no diffusion loss: at t ~ 0 their target is unpredictable noise that
would only add variance.

Why v-prediction and not rectified flow: measured with `scripts/compare_objectives.py` (tiny preset,
a synthetic action-controlled latent video: a 2x2 square on an 8x8, 4-channel latent moving one cell
per frame as a Discrete(5) action says; 3 clean context frames, the next frame sampled and compared
with the true one; both trained with the same data, per-frame logit-normal noise levels, AdamW 1e-3,
1500 steps of batch 32, T = 4, seeds 0, 1, 2; 2-core shared CPU, one thread, 70-230 s per run).
Mean squared error of the sampled frame against the truth, mean over the three seeds (copying the
last context frame scores 0.117):

    sampling steps     rectified flow (v = eps - x0, Euler)   v-prediction, cosine (DDIM)
    1                  0.131                                  0.071
    2                  0.020                                  0.010
    4                  0.019                                  0.013
    16                 0.023                                  0.018

v-prediction was better in 11 of the 12 (seed, steps) pairs, by about 2x in the few-step regime
that the simulator cares about. The one-step column isolates training (both samplers then return
the network's x0 estimate at t = 1): a rectified-flow network must output eps - x0 there, copying
its whole input, while v-prediction at t = 1 is just -x0. Rectified flow is therefore not kept.

Reward and termination heads (when the model has them) are trained alongside with MSE and binary
cross-entropy, only on frames that have a target (NaN marks "no target").
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class ObjectiveConfig:
    """How noise levels are drawn and how the loss terms are weighted."""

    time_sampling: str = "uniform"  # uniform: every level, t = 1 (where sampling starts) included | logit_normal (SD3: mid noise)
    logit_mean: float = 0.0  # mean of the normal before the sigmoid
    logit_std: float = 1.0  # std of the normal before the sigmoid
    # Probability that a sample's frames are all drawn at t = 1 (pure noise; context frames stay as drawn below):
    # the only level one-step sampling evaluates, where the frame comes from context and actions alone
    pure_noise_prob: float = 0.0
    context_prob: float = 0.5  # probability that a sample starts with a context prefix (1 to T-1 frames)
    context_noise_max: float = 0.0  # context frames get t ~ U(0, this): > 0 makes rollouts robust to their own errors
    action_dropout: float = 0.1  # per frame, drop the actions (null embedding) so classifier-free guidance works
    reward_weight: float = 1.0  # weight of the reward MSE
    termination_weight: float = 1.0  # weight of the termination BCE
    reward_balance: bool = False  # rewarded and unrewarded frames weigh half each in the reward MSE (sparse rewards)
    heads_max_noise: float = 1.0  # reward/termination losses only on frames noised at most this much (the simulator reads them clean)
    motion_weight: float = 0.0  # > 0 (DiTs with a motion kernel): fit the kernel-moved previous clean frame to the clean frame
    # Latent pixels left out of that fit on each side: a shift brings in what the kernel pads with zeros there, and
    # over the whole frame the zeros cost more than a blend of shifted and unshifted (Crafter's grass looks alike
    # either way), so the kernel stays on its centre tap; set it to the kernel's radius to fit the interior only
    motion_border: int = 0
    # > 0 (DiTs with a motion field, `DiTConfig.motion_field`): fit the field-moved previous clean frame to the clean
    # frame, on every frame with two clean frames before it (the same border left out as motion_border)
    field_weight: float = 0.0
    # > 0 (DiTs with a conv prior, `DiTConfig.conv_prior`): fit its guess of each clean frame, from the two clean
    # frames before it, to the frame (every frame with two before it)
    prior_weight: float = 0.0
    # > 0: within each frame, latent pixels weigh 1 + change_weight * |change from the previous clean frame| (mean over
    # channels, clipped to 1), so what moves or changes (a sprite turning, an object entering) is not drowned by the
    # still background; each frame's total weight stays the same
    change_weight: float = 0.0
    # > 0: latent pixels away from their frame's median latent (the background: the probe world's floor, Crafter's
    # grass) weigh 1 + object_weight * min(mean over channels |x0 - median|, 1), as the autoencoder's object_weight
    # does with pixels: a fading ball costs more than its share of the frame
    object_weight: float = 0.0
    # > 0: the latent pixels inside `agent_box` weigh 1 + agent_weight (on top of change_weight's). Worlds whose view
    # follows the agent draw it at one place (Crafter at 72 x 72: latent rows 6-7, columns 8-9), and how it turns is
    # the plainest sign of a move: a few latent pixels of the frame's hundreds, drowned by the terrain otherwise
    agent_weight: float = 0.0
    agent_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    # > 0 (the probe world's stores: they record each ball's position, radius and visibility): the latent pixels a
    # visible ball covers weigh 1 + ball_weight * (median radius / its radius)^2, so that every ball costs about the
    # same whatever its size (the DiT loses the small ones first; scripts/probe_ball_size.py). Also in the prior's error
    ball_weight: float = 0.0  # top, bottom, left, right in latent pixels (bottom, right excluded)
    # > 0 (with a camera: TrainConfig.camera_state, or a DiT's world heads): the latent pixels whose place was on
    # screen in an earlier frame of the sample but not in the frame just before (what only memory can draw: the way
    # back of a walk; `worldsim.models.camera`) weigh 1 + recall_weight, so the few patches that ask for recall are
    # not drowned by those the last frame shows
    recall_weight: float = 0.0
    # > 0 (a DiT that composites: prior_composite or motion_composite; with a camera as recall_weight): the DiT's own
    # prediction, before the composite blends in the guess, is also fitted on those recalled pixels with this weight.
    # Where the mask leans on the guess (which reads only the frames just before, so cannot recall) the composite
    # passes the transformer little gradient there; this term gives it the whole of it
    recall_own_weight: float = 0.0
    # Probability that a sample cut by a context scheme sees, as its newest context frame, the model's own
    # one-step sample of that frame (from pure noise, given the frames before it) instead of the real one:
    # what a rollout feeds back, so the model learns to continue from its own errors (self-forcing against drift)
    own_context_prob: float = 0.0
    own_context_frames: int = 1  # how many of the newest context frames that rollout replaces (the oldest stays real)
    # With own_context_prob: that own sample enters the context as a simulator served with `reencode` sees it:
    # decoded (after the latent frames before it in the window, at most own_context_reencode of them in all),
    # drawn as uint8 frames and encoded again. 0: the sampled latent as it is
    own_context_reencode: int = 0
    # Store state key (e.g. player_pos) whose change over each latent frame a DiT head predicts (BCE on the frames
    # being denoised; `DiTConfig.state_change_head`, set by the trainer): whether a move succeeded, read from context.
    # A DiT with a motion gate (`DiTConfig.motion_gate`) also fits its gate to it, on every frame after a real one
    state_change_key: str = ""
    state_change_weight: float = 1.0

    @property
    def needs_recalled(self) -> bool:
        """Whether the loss needs the recalled pixels (`recall_weight`, `recall_own_weight`), hence a camera."""
        return self.recall_weight > 0 or self.recall_own_weight > 0

    def __post_init__(self) -> None:
        if self.time_sampling not in ("logit_normal", "uniform"):
            raise ValueError(f"time_sampling must be 'logit_normal' or 'uniform', got {self.time_sampling!r}")
        for name in ("context_prob", "context_noise_max", "action_dropout", "heads_max_noise", "pure_noise_prob",
                     "own_context_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.field_weight < 0 or self.prior_weight < 0:
            raise ValueError(f"field_weight and prior_weight must be >= 0, got {self.field_weight}, {self.prior_weight}")
        if self.motion_border < 0:
            raise ValueError(f"motion_border must be >= 0, got {self.motion_border}")
        if self.own_context_frames < 1:
            raise ValueError(f"own_context_frames must be >= 1, got {self.own_context_frames}")
        if self.own_context_reencode < 0:
            raise ValueError(f"own_context_reencode must be >= 0 (latent frames decoded), got {self.own_context_reencode}")
        if self.own_context_reencode and not self.own_context_prob:
            raise ValueError("own_context_reencode re-encodes self-forcing's own frames: set objective.own_context_prob > 0")
        if not (math.isfinite(self.state_change_weight) and self.state_change_weight >= 0):
            raise ValueError(f"state_change_weight must be finite and >= 0, got {self.state_change_weight}")
        for name in ("change_weight", "object_weight", "ball_weight", "recall_weight", "recall_own_weight"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {getattr(self, name)}")
        self.agent_box = tuple(int(v) for v in self.agent_box)
        top, bottom, left, right = self.agent_box if len(self.agent_box) == 4 else (-1, -1, -1, -1)
        if top < 0 or not (math.isfinite(self.agent_weight) and self.agent_weight >= 0) \
                or (self.agent_weight > 0 and not (top < bottom and left < right)):
            raise ValueError(f"agent_weight must be finite and >= 0, and agent_box (top, bottom, left, right) a box of "
                             f"latent pixels, non-empty when agent_weight > 0; got {self.agent_weight}, "
                             f"{list(self.agent_box)}")


def schedule(t: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha_t, sigma_t) = (cos(pi t / 2), sin(pi t / 2)) for noise levels t in [0, 1], same shape as t."""
    phi = 0.5 * math.pi * t
    return torch.cos(phi), torch.sin(phi)


def _frames(t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """alpha, sigma of per-frame levels t (B, T) shaped (B, T, 1, 1, 1) in like's dtype."""
    alpha, sigma = schedule(t.double())
    return alpha[:, :, None, None, None].to(like.dtype), sigma[:, :, None, None, None].to(like.dtype)


def add_noise(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = alpha_t x0 + sigma_t eps. x0, noise (B, T, C, h, w); t (B, T) in [0, 1]."""
    alpha, sigma = _frames(t, x0)
    return alpha * x0 + sigma * noise


def v_target(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """v = alpha_t eps - sigma_t x0, the derivative of x_t along the angle pi t / 2; shape of x0."""
    alpha, sigma = _frames(t, x0)
    return alpha * noise - sigma * x0


def predict_x0(x_t: Tensor, v: Tensor, t: Tensor) -> Tensor:
    """Clean estimate alpha_t x_t - sigma_t v from a v prediction. x_t, v (B, T, C, h, w); t (B, T)."""
    alpha, sigma = _frames(t, x_t)
    return alpha * x_t - sigma * v


def predict_noise(x_t: Tensor, v: Tensor, t: Tensor) -> Tensor:
    """Noise estimate sigma_t x_t + alpha_t v from a v prediction; shapes as in `predict_x0`."""
    alpha, sigma = _frames(t, x_t)
    return sigma * x_t + alpha * v


def sample_noise_levels(
    batch: int, frames: int, generator: torch.Generator, config: ObjectiveConfig = ObjectiveConfig(),
    context_frames: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Independent per-frame noise levels with an optional clean context prefix.

    `context_frames` fixes the prefix to exactly that many frames in every sample (the split a
    rollout presents, for samples cut by a context scheme); None draws it as `config` says.
    Returns (noise_level (B, T) float in [0, 1], is_context (B, T) bool), on the generator's device.
    """
    device = generator.device
    if config.time_sampling == "uniform":
        t = torch.rand(batch, frames, generator=generator, device=device)
    else:
        z = torch.randn(batch, frames, generator=generator, device=device)
        t = torch.sigmoid(config.logit_mean + config.logit_std * z)
    if config.pure_noise_prob > 0:  # drawn only when asked, so the default's generator stream is unchanged
        pure = torch.rand(batch, generator=generator, device=device) < config.pure_noise_prob
        t = torch.where(pure[:, None], torch.ones_like(t), t)
    has_context = torch.rand(batch, generator=generator, device=device) < config.context_prob
    prefix = torch.randint(1, max(frames, 2), (batch,), generator=generator, device=device) * has_context
    if context_frames is not None:  # drawn above all the same, so the generator's stream does not depend on it
        if not 0 <= context_frames < frames:
            raise ValueError(f"context_frames must lie in [0, {frames - 1}] for {frames} frames, got {context_frames}")
        prefix = torch.full_like(prefix, context_frames)
    is_context = torch.arange(frames, device=device)[None, :] < prefix[:, None]  # (B, T)
    context_t = torch.rand(batch, frames, generator=generator, device=device) * config.context_noise_max
    return torch.where(is_context, context_t, t), is_context


def _moved_error(moved: Tensor, x0: Tensor, first: int, border: int, pixel: Tensor | None = None) -> Tensor:
    """Mean squared error of moved (B, T, C, h, w) against x0 over frames `first`..., without `border` latent pixels
    on each side (zero, keeping the graph, when the window has no such frame); `pixel` (B, T, 1, h, w) weighs the
    latent pixels (a weighted mean)."""
    size = min(x0.shape[-2:])
    if 2 * border >= size:
        raise ValueError(f"objective.motion_border={border} leaves nothing of a {size}-pixel latent to fit")
    if x0.shape[1] <= first:
        return moved.sum() * 0
    inner = (..., slice(border, x0.shape[-2] - border), slice(border, x0.shape[-1] - border))
    err = (moved[:, first:].float() - x0[:, first:].float())[inner].pow(2)
    if pixel is None:
        return err.mean()
    w = pixel[:, first:].float()[inner].expand_as(err)
    return (err * w).sum() / w.sum()


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
    context_frames: int | None = None,
    state_change: Tensor | None = None,
    ball_pixels: Tensor | None = None,
    camera: Tensor | None = None,
    recalled: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """v-prediction loss with per-frame noise levels, plus reward/termination terms.

    model: callable like `DiT.forward` returning an object with `.prediction` (and `.reward`,
        `.termination_logit` when those targets are given).
    x0: (B, T, C, h, w) clean normalised latents. actions (B, T, k, D) / action_mask (B, T, k)
        bool, or None. frame_index (B, T) long or None.
    reward: (B, T) float targets, NaN where a frame has none. termination: (B, T) in {0, 1}, NaN
        where none. state_change: (B, T) in {0, 1}, NaN where none (`state_change_key`). ball_pixels:
        (B, T, 1, h, w) latent pixel weights of the balls (`ball_weight`; `LatentWindowDataset`).
        context_frames: exactly this many leading frames are clean context in every sample (see
        `sample_noise_levels`). camera: (B, T, 2) the frames' view origins for a DiT with world heads, or None;
        recalled: (B, T, 1, h, w) bool, the latent pixels only memory can draw (`recall_weight`).
        All randomness comes from `generator`.
    Returns (scalar loss, logs of detached 0-d tensors: reading one is a device sync, so the trainer
    reads them only at its logging interval).
    """
    batch, frames = x0.shape[:2]
    t, is_context = sample_noise_levels(batch, frames, generator, config, context_frames)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(x0.device)
    t, is_context = t.to(x0.device), is_context.to(x0.device)
    if actions is not None:
        if action_mask is None:
            action_mask = torch.ones(actions.shape[:3], dtype=torch.bool, device=actions.device)
        keep = torch.rand(batch, frames, generator=generator, device=generator.device) >= config.action_dropout
        action_mask = action_mask & keep.to(action_mask.device)[:, :, None]
    extra = {} if camera is None else {"camera": camera}
    if config.motion_weight > 0 or config.field_weight > 0 or config.prior_weight > 0:  # it also sees the clean frames
        extra["clean"] = x0
    out = model(add_noise(x0, noise, t), t, actions, action_mask, frame_index, **extra)
    target = v_target(x0, noise, t).float()
    err = (out.prediction.float() - target).pow(2)  # (B, T, C, h, w)
    pixel = pixel_weights(x0, config)
    if config.ball_weight > 0:  # (B, T, 1, h, w) from the data: 1 off the balls
        if ball_pixels is None:
            raise ValueError("objective.ball_weight > 0 needs the balls' latent weights (a store with ball state, "
                             "read through the latent cache)")
        pixel = ball_pixels.float() if pixel is None else pixel * ball_pixels.float()
    if config.needs_recalled and recalled is None:
        raise ValueError("objective.recall_weight and recall_own_weight need a camera that tells which places were seen "
                         "before: camera_state (a store state) or a DiT with world heads (model_overrides.world_heads)")
    if config.recall_weight > 0:
        recall = 1.0 + config.recall_weight * recalled.float()
        pixel = recall if pixel is None else pixel * recall
    if pixel is not None:
        per_frame = (err * pixel).mean(dim=(2, 3, 4)) / pixel.mean(dim=(2, 3, 4))
    else:
        per_frame = err.mean(dim=(2, 3, 4))  # (B, T)
    weight = (~is_context).float()
    diffusion = (per_frame * weight).sum() / weight.sum().clamp(min=1)
    loss, logs = diffusion, {"diffusion": diffusion.detach(), "noise_level": t.mean()}
    if config.recall_own_weight > 0:  # the DiT's own prediction on the recalled pixels of the denoised frames
        if getattr(out, "own_prediction", None) is None:
            raise ValueError("objective.recall_own_weight > 0 needs a DiT that composites (model_overrides."
                             "prior_composite or motion_composite): otherwise its prediction is its own already")
        where = recalled.float() * weight[:, :, None, None, None]  # (B, T, 1, h, w)
        own = ((out.own_prediction.float() - target).pow(2) * where).sum() / (where.sum() * x0.shape[2]).clamp(min=1)
        loss, logs["recall_own"] = loss + config.recall_own_weight * own, own.detach()
    # the moved previous clean frame fitted to the clean frame: the motion kernel from the second frame on, the
    # motion field from the third (it reads two frames before)
    for name, weight, moved, first, needs in (
            ("motion", config.motion_weight, "motion", 1, "a motion kernel (model_overrides.motion_radius > 0)"),
            ("field", config.field_weight, "field_motion", 2, "a motion field (model_overrides.motion_field > 0)"),
            ("prior", config.prior_weight, "prior_next", 2, "a conv prior (model_overrides.conv_prior > 0)")):
        if weight > 0:
            if getattr(out, moved, None) is None:
                raise ValueError(f"objective.{name}_weight > 0 needs a DiT with {needs}")
            term = _moved_error(getattr(out, moved), x0, first, config.motion_border,
                                ball_pixels if config.ball_weight > 0 else None)
            loss, logs[name] = loss + weight * term, term.detach()
    seen = t <= config.heads_max_noise  # (B, T): frames the heads learn from
    if reward is not None:
        has = ~torch.isnan(reward) & seen
        term = _reward_loss(out.reward.float(), reward.float(), has, config.reward_balance)
        loss, logs["reward"] = loss + config.reward_weight * term, term.detach()
    if termination is not None:
        has = ~torch.isnan(termination) & seen
        term = (
            F.binary_cross_entropy_with_logits(out.termination_logit[has].float(), termination[has].float())
            if has.any() else out.termination_logit.sum() * 0
        )
        loss, logs["termination"] = loss + config.termination_weight * term, term.detach()
    if state_change is not None:
        head, gate = getattr(out, "state_change_logit", None), getattr(out, "motion_gate_logit", None)
        if head is None and gate is None:
            raise ValueError("objective.state_change_key needs a DiT with a state change head (state_change_head=True) "
                             "or a motion gate (motion_gate > 0, with objective.motion_weight > 0)")
        known = ~torch.isnan(state_change)
        if head is not None:
            term = _bce(head, state_change, known & ~is_context)
            loss, logs["state_change"] = loss + config.state_change_weight * term, term.detach()
        if gate is not None:  # the gate read the clean previous frame: every frame with a real one just before it
            step = torch.ones_like(state_change, dtype=torch.bool)
            step[:, 0] = False
            if frame_index is not None:
                step[:, 1:] = (frame_index[:, 1:] - frame_index[:, :-1]) == 1
            term = _bce(gate, state_change, known & step)
            loss, logs["motion_gate"] = loss + config.state_change_weight * term, term.detach()
    logs["loss"] = loss.detach()
    return loss, logs


def _bce(logit: Tensor, target: Tensor, where: Tensor) -> Tensor:
    """Mean binary cross-entropy of logit against target (B, T) over `where`; a zero that keeps the graph if empty."""
    logit = logit.float()
    return F.binary_cross_entropy_with_logits(logit[where], target[where].float()) if where.any() else logit.sum() * 0


def pixel_weights(x0: Tensor, config: ObjectiveConfig) -> Tensor | None:
    """(B or 1, T, 1, h, w) weights of the latent pixels in the diffusion error (`change_weight`, `object_weight`,
    `agent_weight`, multiplied), or None when every pixel weighs the same."""
    pixel = change_weights(x0, config.change_weight) if config.change_weight > 0 and x0.shape[1] > 1 else None
    if config.object_weight > 0:
        median = x0.float().flatten(-2).median(dim=-1).values[..., None, None]  # (B, T, C, 1, 1)
        far = 1.0 + config.object_weight * (x0.float() - median).abs().mean(dim=2, keepdim=True).clamp(max=1.0)
        pixel = far if pixel is None else pixel * far
    if config.agent_weight > 0:
        top, bottom, left, right = config.agent_box
        h, w = x0.shape[-2:]
        if bottom > h or right > w:
            raise ValueError(f"objective.agent_box {list(config.agent_box)} lies outside the {h} x {w} latents")
        agent = torch.ones(1, 1, 1, h, w, device=x0.device)
        agent[..., top:bottom, left:right] += config.agent_weight
        pixel = agent if pixel is None else pixel * agent
    return pixel


def change_weights(x0: Tensor, strength: float) -> Tensor:
    """(B, T, 1, h, w) weights 1 + strength * min(mean over channels |x0[t] - x0[t-1]|, 1); frame 0 all ones."""
    change = (x0[:, 1:].float() - x0[:, :-1].float()).abs().mean(dim=2, keepdim=True).clamp(max=1.0)
    return 1.0 + strength * torch.cat([torch.zeros_like(change[:, :1]), change], dim=1)


def _reward_loss(pred: Tensor, target: Tensor, has: Tensor, balance: bool) -> Tensor:
    """MSE over the frames in `has`; balanced: the mean over rewarded frames and the mean over unrewarded ones,
    averaged, so a rare reward is not learned as zero (both kinds must be in the batch, else the plain MSE)."""
    if not has.any():
        return pred.sum() * 0
    err = (pred - target).pow(2)
    rewarded = has & (target != 0)
    plain = has & (target == 0)
    if balance and rewarded.any() and plain.any():
        return 0.5 * (err[rewarded].mean() + err[plain].mean())
    return err[has].mean()
