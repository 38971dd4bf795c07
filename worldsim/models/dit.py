"""Spacetime-patch diffusion transformer conditioned on per-frame noise level and actions.

The model knows nothing about diffusion (as in facebookresearch/DiT): it maps noisy latent frames,
each frame's noise level and the actions each frame covers to a prediction of the same shape; the
objective (`worldsim.diffusion.objective`) decides what the prediction means. The exceptions are
`motion_composite` and `prior_composite`, which must know the noise schedule to blend the moved previous
frame or the conv prior's guess into the clean-frame estimate that the prediction implies.

Tokens are p x p x 1 patches of each latent frame, positioned by 3-D rotary embeddings over (true
time index, patch row, patch column). Attention is causal at frame granularity: a frame sees itself
and the frames before it in the sequence, which makes the key/value cache (`KVCache`) exact.
Conditioning is per frame through adaLN-Zero (noise-level embedding + action embedding).

With `previous_frame`, every frame's tokens also receive the latent of the frame before it in the
sequence (the same patch, through its own zero-initialised projection) and that frame's noise level
joins the conditioning. Copying the last frame then is a per-token linear map rather than an
attention lookup across frames, the way DIAMOND and GameNGen feed their context frames (channel
concatenation); a DiT without it stayed below the copy-the-last-frame score on held-out windows for
10k steps (docs/curves/shipped). The first frame of a sequence takes its previous frame from the
cache (which keeps its frames' inputs), or zeros at noise level 1 without one.

With `motion_radius` r > 0 (on top of `previous_frame`), the previous frame is moved before it is
fed, by a (2r+1) x (2r+1) kernel the frame's action picks (Finn et al.'s CDNA, 2016;
`worldsim.models.motion.MotionKernel`): a move that scrolls the whole view is a kernel with its weight
off centre instead of an attention pattern. It sits in the copy pathway itself (as a separate additive
input it learned an action-independent blur) and starts as nearly the identity.

With `previous_frames=2` the frame before the previous one is fed the same way (its own zeroed
projection): a ball's last two positions then sit in the tokens where it will be next, so its
velocity is a per-token function instead of an attention lookup two frames back (DIAMOND feeds its
last 4 frames as channels). Measured on Probes-v0 (README, training section): action following rose
(inverse dynamics on simulated frames 0.67 -> 0.77), PSNR did not move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from worldsim.models.actions import ActionEncoder
from worldsim.models.attention import FrameCausalAttention, frame_causal_mask
from worldsim.models.camera import camera_positions, camera_table, world_rotary
from worldsim.models.embeddings import NoiseLevelEmbedder, PatchEmbed, patch_positions, unpatchify
from worldsim.models.kv_cache import KVCache, earlier_latents, previous_latents
from worldsim.models.motion import ConvPrior, MotionField, MotionKernel, composite_v
from worldsim.models.rotary import Rotary3D, axis_dims
from worldsim.spaces import space_from_json


@dataclass
class DiTConfig:
    """Architecture of the diffusion transformer; presets live in `worldsim.models.presets`."""

    latent_channels: int = 16  # C of the autoencoder's latents
    patch_size: int = 2  # spatial patch side in latent pixels; latent h and w must be divisible by it
    temporal_patch: int = 1  # latent frames per token; only 1: causality, noise levels and the cache are per frame
    dim: int = 384  # token width
    depth: int = 12  # transformer blocks
    heads: int = 6  # attention heads; dim / heads must be divisible by 8 (3-D rotary split)
    mlp_ratio: float = 4.0  # MLP hidden width / dim
    qk_norm: bool = True  # RMS-norm queries and keys: keeps attention logits bounded in bf16 at scale
    action_space: dict[str, Any] | None = None  # worldsim.spaces.space_to_json of the action space; None: action-free
    action_substeps: int = 1  # k: actions per latent frame, the autoencoder's temporal compression
    reward_head: bool = False  # predict a per-frame reward from pooled final tokens
    termination_head: bool = False  # predict a per-frame termination logit
    # predict per frame whether a recorded state changed over it (objective.state_change_key, e.g. the player's cell):
    # an auxiliary target that makes the trunk compute what the frame cannot show yet (does this move succeed?)
    state_change_head: bool = False
    rope_theta_time: float = 10_000.0  # rotary base over time: resolves offsets from 1 to thousands of frames
    rope_theta_space: float = 100.0  # rotary base over patch rows/columns: grids are tens of patches
    previous_frame: bool = False  # also feed each frame the previous frame's latent, patch by patch (module docstring)
    previous_frames: int = 1  # with previous_frame, 2 also feeds the frame before that: a moving object's velocity is in its token
    motion_radius: int = 0  # r > 0: the previous latent is moved by an action-chosen (2r+1)^2 kernel first (docstring)
    motion_groups: int = 1  # kernels per frame, each for C / groups latent channels
    # > 0: the kernel also sees the previous latent (pooled to this many cells a side) through a small MLP with the
    # action, so a move can be told apart from a blocked one (Crafter: walking into a tree does not scroll the view)
    motion_context: int = 0
    # > 0: a small conv net of this width reads the previous latent and the action and predicts whether the move
    # succeeds; the kernel is then that probability times the action's kernel plus the rest times the identity, so
    # the action's kernel can shift fully instead of blending "moved" with "blocked" (trained on
    # objective.state_change_key; starts at probability ~1, so a warm start predicts as before)
    motion_gate: int = 0
    # True: the prediction composites the moved previous latent with the DiT's own estimate (CDNA's masks): a
    # per-latent-pixel mask m from the final tokens (starts at 0.5) takes the clean-frame estimate to (1 - w) x0 +
    # w moved, w = m sigma_t^2 alpha_prev^2: all of it at t = 1, where one-step sampling starts, none at t = 0 or
    # from a pure-noise previous frame (`worldsim.models.motion.composite_v`); the prediction stays the objective's v
    motion_composite: bool = False
    # > 0 (with previous_frames=2): a conv net of this width gives each latent pixel its own kernel over the previous
    # frame (`worldsim.models.motion.MotionField`), read as one more input (zero at first); loss objective.field_weight
    motion_field: int = 0
    motion_field_radius: int = 4  # the field's kernels reach this many latent pixels each way
    # > 0 (with previous_frames=2): a conv net of this width guesses the next latent from the two frames before it and
    # the action (`worldsim.models.motion.ConvPrior`), read as one more per-token input (zero at first); its own loss
    # is objective.prior_weight. prior_heads > 1: it makes that many guesses and commits to one (ConvPrior's heads)
    conv_prior: int = 0
    prior_heads: int = 1
    # F > 2 (with conv_prior): the prior also reads the F - 2 frames before those two (from the sequence and the
    # cache's newest latents; zeros where there are none), so it can carry what went out of sight a few frames ago
    prior_frames: int = 2
    # > 0: the last this many attention heads place each frame's patches where the camera put them (screen position
    # plus the view's origin, summed over the moves so far; `worldsim.models.camera`), so a place left and seen
    # again sits at the same position there. camera_moves: [action, d_row, d_col] of each action that scrolls the
    # view (patches; Discrete actions only). No new weights: a warm start attends as before until the view moves
    world_heads: int = 0
    camera_moves: list[list[int]] | None = None
    # True (with conv_prior): that guess composited into the prediction as motion_composite does the moved frame
    prior_composite: bool = False

    def __post_init__(self) -> None:
        if self.temporal_patch != 1:
            raise ValueError(f"temporal_patch={self.temporal_patch}: only 1 is supported, because frame-causal attention, "
                             "per-frame noise levels and the key/value cache all work one latent frame at a time")
        if self.dim % self.heads != 0:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        axis_dims(self.dim // self.heads)  # raises if the head dimension cannot be split over (t, h, w)
        if self.patch_size < 1 or self.action_substeps < 1:
            raise ValueError(f"patch_size and action_substeps must be >= 1, got {self.patch_size}, {self.action_substeps}")
        if self.motion_radius < 0 or self.motion_groups < 1 or self.latent_channels % self.motion_groups:
            raise ValueError(f"motion_radius must be >= 0 and motion_groups >= 1 dividing latent_channels "
                             f"{self.latent_channels}, got {self.motion_radius}, {self.motion_groups}")
        for name in ("motion_context", "motion_gate"):
            value = getattr(self, name)
            if value < 0 or (value and not self.motion_radius):
                raise ValueError(f"{name} must be >= 0 and needs motion_radius > 0, got {value}")
        if (self.motion_composite and not self.motion_radius) or (self.prior_composite and not self.conv_prior) \
                or (self.motion_composite and self.prior_composite):
            raise ValueError("motion_composite composites the moved previous frame (it needs motion_radius > 0), "
                             "prior_composite the conv prior's guess (it needs conv_prior > 0); one of them at most")
        if self.previous_frames not in (1, 2) or (self.previous_frames == 2 and not self.previous_frame):
            raise ValueError(f"previous_frames must be 1 or 2 (2 needs previous_frame=True), got {self.previous_frames}")
        if self.motion_field < 0 or self.motion_field_radius < 1 or (self.motion_field and self.previous_frames != 2):
            raise ValueError(f"motion_field must be >= 0 and needs previous_frames=2 (it reads a displacement), and "
                             f"motion_field_radius >= 1, got {self.motion_field}, {self.motion_field_radius}")
        if self.conv_prior < 0 or self.conv_prior % 8 or (self.conv_prior and self.previous_frames != 2) \
                or self.prior_heads < 1 or (self.prior_heads > 1 and not self.conv_prior):
            raise ValueError(f"conv_prior must be a multiple of 8 (0: none) and needs previous_frames=2, prior_heads "
                             f">= 1 (> 1 needs conv_prior), got {self.conv_prior}, {self.prior_heads}")
        if self.prior_frames < 2 or (self.prior_frames > 2 and not self.conv_prior):
            raise ValueError(f"prior_frames must be >= 2 (> 2 needs conv_prior > 0), got {self.prior_frames}")
        if not 0 <= self.world_heads <= self.heads or (self.world_heads and not self.camera_moves) \
                or (self.world_heads and (self.action_space or {}).get("type") != "Discrete"):
            raise ValueError(f"world_heads must be in [0, heads={self.heads}] and needs camera_moves and a Discrete "
                             f"action space, got {self.world_heads}, {self.camera_moves}, {self.action_space}")
        if self.motion_radius and not (self.previous_frame and self.action_space is not None):
            raise ValueError("motion_radius > 0 moves the previous frame by the action: it needs previous_frame=True "
                             "and an action space")


@dataclass
class DiTOutput:
    """What one forward pass returns; reward / termination only when the config enables the heads."""

    prediction: Tensor  # (B, T, C, h, w): the objective's target (v of v-prediction on the cosine schedule)
    reward: Tensor | None = None  # (B, T) predicted reward of each frame
    termination_logit: Tensor | None = None  # (B, T) logit of "the episode ended at this frame"
    state_change_logit: Tensor | None = None  # (B, T) logit of "the recorded state changed over this frame"
    motion_gate_logit: Tensor | None = None  # (B, T) the motion gate's "this move succeeds" logit on `clean` (when asked)
    motion: Tensor | None = None  # (B, T, C, h, w): `clean`'s previous frames moved by the motion kernel (when asked)
    composite_mask: Tensor | None = None  # (B, T, 1, h, w): the motion composite's mask m (motion_composite)
    own_prediction: Tensor | None = None  # (B, T, C, h, w): with a composite, the DiT's own prediction before it
    field_motion: Tensor | None = None  # (B, T, C, h, w): `clean`'s previous frames moved by the motion field (when asked)
    prior_next: Tensor | None = None  # (B, T, C, h, w): the conv prior's guess of each frame from `clean` (when asked)
    prior_guess: Tensor | None = None  # (B, T, C, h, w): the conv prior's guess of each frame from the frames it read
    cache: KVCache | None = field(default=None, repr=False)  # input cache + these frames, if asked for


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x (B, T, N, D) shifted and scaled per frame by shift, scale (B, T, 1, D)."""
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """A DiT block with adaLN-Zero conditioning and frame-causal self-attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = FrameCausalAttention(dim, heads, qk_norm)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(
        self, x: Tensor, c: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None,
        past: tuple[Tensor, Tensor] | None = None, in_place: bool = False, slots: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, T, N, D), c (B, T, D) -> (x, this block's (keys, values)); `in_place`, `slots` as in FrameCausalAttention."""
        frames = x.shape[1]
        mods = self.adaLN_modulation(c)[:, :, None].chunk(6, dim=-1)  # six of (B, T, 1, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods
        h = rearrange(modulate(self.norm1(x), shift_msa, scale_msa), "b t n d -> b (t n) d")
        h, kv = self.attn(h, rope, mask, past, in_place, slots)
        x = x + gate_msa * rearrange(h, "b (t n) d -> b t n d", t=frames)
        x = x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x, kv


class FinalLayer(nn.Module):
    """adaLN-modulated projection of each token back to a p x p x C patch."""

    def __init__(self, dim: int, patch: int, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch * patch * channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x (B, T, N, D), c (B, T, D) -> (B, T, N, p * p * C)."""
        shift, scale = self.adaLN_modulation(c)[:, :, None].chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class FrameHead(nn.Module):
    """A scalar per frame from the mean of its final tokens (reward or termination logit)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, N, D) -> (B, T)."""
        return self.mlp(x.mean(dim=2)).squeeze(-1)


class DiT(nn.Module):
    """Video diffusion transformer over spacetime patches; see the module docstring."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.patch_embed = PatchEmbed(c.latent_channels, c.patch_size, c.dim)
        self.noise_embed = NoiseLevelEmbedder(c.dim)
        self.previous_embed = PatchEmbed(c.latent_channels, c.patch_size, c.dim) if c.previous_frame else None
        self.previous_noise_embed = NoiseLevelEmbedder(c.dim) if c.previous_frame else None
        earlier = c.previous_frame and c.previous_frames == 2
        self.earlier_embed = PatchEmbed(c.latent_channels, c.patch_size, c.dim) if earlier else None
        self.earlier_noise_embed = NoiseLevelEmbedder(c.dim) if earlier else None
        self.motion = MotionKernel(c.dim, c.latent_channels, c.motion_radius, c.motion_groups, c.motion_context,
                                   c.motion_gate) if c.motion_radius else None
        self.field = MotionField(c.dim, c.latent_channels, c.motion_field_radius, c.motion_field) if c.motion_field else None
        self.field_embed = PatchEmbed(c.latent_channels, c.patch_size, c.dim) if c.motion_field else None
        self.prior = ConvPrior(c.dim, c.latent_channels, c.conv_prior, c.prior_heads, c.prior_frames) \
            if c.conv_prior else None
        self.prior_embed = PatchEmbed(c.latent_channels, c.patch_size, c.dim) if c.conv_prior else None
        self.action_space = None if c.action_space is None else space_from_json(c.action_space)
        self.action_encoder = None if self.action_space is None else ActionEncoder(self.action_space, c.dim, c.action_substeps)
        self.rotary = Rotary3D(c.dim // c.heads, c.rope_theta_time, c.rope_theta_space)
        if c.world_heads:  # derived from the config: not in the state dict
            self.register_buffer("camera_table", camera_table(c.camera_moves, self.action_space.n), persistent=False)
        self.blocks = nn.ModuleList(DiTBlock(c.dim, c.heads, c.mlp_ratio, c.qk_norm) for _ in range(c.depth))
        self.final = FinalLayer(c.dim, c.patch_size, c.latent_channels)
        self.composite = FinalLayer(c.dim, c.patch_size, 1) if c.motion_composite or c.prior_composite else None
        self.reward_head = FrameHead(c.dim) if c.reward_head else None
        self.termination_head = FrameHead(c.dim) if c.termination_head else None
        self.state_change_head = FrameHead(c.dim) if c.state_change_head else None
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation: Xavier linears, zeroed adaLN modulations and output (adaLN-Zero)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for layer in (self.noise_embed.mlp[0], self.noise_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)
        if self.composite is not None:  # mask logit 0 everywhere at first: m = 0.5
            for layer in (self.composite.adaLN_modulation[-1], self.composite.linear):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        if self.previous_embed is not None:  # zero: adding the pathway to a trained model changes nothing at first
            nn.init.zeros_(self.previous_embed.proj.weight)
            nn.init.normal_(self.previous_noise_embed.mlp[0].weight, std=0.02)
            nn.init.zeros_(self.previous_noise_embed.mlp[2].weight)
        if self.earlier_embed is not None:  # likewise zero: a warm start from a one-frame pathway predicts as before
            nn.init.zeros_(self.earlier_embed.proj.weight)
            nn.init.normal_(self.earlier_noise_embed.mlp[0].weight, std=0.02)
            nn.init.zeros_(self.earlier_noise_embed.mlp[2].weight)
        if self.motion is not None:  # (nearly) identity kernels: the copy pathway starts as it was
            self.motion.reset_to_identity()
        for embed in (self.field_embed, self.prior_embed):  # zero: a warm start without them predicts exactly as before
            if embed is not None:
                nn.init.zeros_(embed.proj.weight)
                nn.init.zeros_(embed.proj.bias)

    def forward(
        self,
        x: Tensor,
        noise_level: Tensor,
        actions: Tensor | None = None,
        action_mask: Tensor | None = None,
        frame_index: Tensor | None = None,
        cache: KVCache | None = None,
        return_cache: bool = False,
        clean: Tensor | None = None,
        prior_guess: Tensor | None = None,
        camera: Tensor | None = None,
    ) -> DiTOutput:
        """Predict for every frame of `x`, attending causally to `cache` (if any) and earlier frames of `x`.

        x: (B, T, C, h, w) noisy latents; h, w divisible by patch_size; any T >= 1.
        noise_level: (B, T) float in [0, 1]; 0 clean, 1 pure noise.
        actions: (B, T, k, D) packed actions (D = packed_dim(space), k = action_substeps) or None
            (no actions: every frame gets the null embedding).
        action_mask: (B, T, k) bool, False = no action; None with actions given means all True.
        frame_index: (B, T) integer true time index of each frame; None means 0..T-1 after the
            cache's frames. Required with a cache (positions must continue the cached ones).
        cache: keys/values of earlier clean frames of the same batch (from `build_cache`).
        return_cache: also return `cache` extended by these frames' keys/values (a cache in slot layout,
            which the forward wrote into, returns these frames' own cache).
        clean: (B, T, C, h, w) the clean latents of `x` (training only, models with a motion kernel): the
            output's `motion` then holds each clean frame's predecessor moved by the frame's kernel, which
            an objective can fit to the clean frame itself (CDNA's direct training of its transformations).
        prior_guess: the conv prior's guess of these frames from an earlier call on the same previous frames
            and actions (the output's `prior_guess`): a clean pass after denoising reuses it instead of rerunning it.
        camera: (B, T, 2) the view's origin at each frame (`world_heads`; `worldsim.models.camera`), on the same
            origin as the cache's frames. None: summed from these frames' actions from 0 (no cache allowed then).
        """
        batch, frames, _, height, width = self._check(x, noise_level, actions, action_mask, frame_index, cache)
        p = self.config.patch_size
        grid_h, grid_w = height // p, width // p
        tokens = self.patch_embed(x)  # (B, T, N, D)
        n = tokens.shape[2]
        if frame_index is None:
            frame_index = repeat(torch.arange(frames, device=x.device), "t -> b t", b=batch)
        cond = self.noise_embed(noise_level)  # (B, T, D)
        action_embedding = None if self.action_encoder is None else \
            self._action_embedding(actions, action_mask, batch, frames)  # (B, T, D)
        moved = guess = None
        if self.previous_embed is not None:
            previous, previous_level = previous_latents(x, noise_level, cache)
            unmoved = previous
            if self.motion is not None:  # the previous frame moved as this frame's actions say
                previous = moved = self.motion(previous, action_embedding)
                if clean is not None:
                    before = torch.cat([torch.zeros_like(clean[:, :1]), clean[:, :-1]], dim=1)
                    gate_clean = self.motion.gate_logit(before, action_embedding) if self.motion.gate else None
                    moved_clean = self.motion(before, action_embedding, gate_clean)
            tokens = tokens + self.previous_embed(previous.to(x.dtype))
            cond = cond + self.previous_noise_embed(previous_level)
        if self.earlier_embed is not None:
            history, history_level = earlier_latents(x, noise_level, cache, self.config.prior_frames - 1)
            earlier, earlier_level, older = history[:, :, 0], history_level[:, :, 0], history[:, :, 1:]
            older = older if older.shape[2] else None
            tokens = tokens + self.earlier_embed(earlier.to(x.dtype))
            cond = cond + self.earlier_noise_embed(earlier_level)
        if self.field is not None:  # each thing moved as its own last displacement says
            tokens = tokens + self.field_embed(self.field(unmoved, earlier, action_embedding).to(x.dtype))
        if self.prior is not None:  # the conv net's guess of this frame
            guess = self.prior(unmoved, earlier, action_embedding, older) if prior_guess is None else prior_guess
            tokens = tokens + self.prior_embed(guess.to(x.dtype))
        if action_embedding is not None:
            cond = cond + action_embedding
        cond = cond.to(tokens.dtype)
        rows, cols = patch_positions(grid_h, grid_w, x.device)
        if self.config.world_heads and camera is None:
            if cache is not None:
                raise ValueError("camera is required with a cache in a DiT with world_heads (the new frames' view "
                                 "origins, continuing the cached ones)")
            camera = camera_positions(actions, action_mask, self.camera_table) if actions is not None \
                else x.new_zeros(batch, frames, 2, dtype=torch.float32)
        rope = world_rotary(self.rotary, frame_index, rows, cols, camera, self.config.heads, self.config.world_heads)
        past_frames = 0 if cache is None else cache.num_frames
        # One new frame sees everything: no mask, so GPUs can use the flash kernel on the rollout path.
        mask = None if frames == 1 else frame_causal_mask(frames, n, past_frames, x.device)  # (T * N, (F + T) * N)
        slots = None if cache is None else cache.slots
        if slots is not None:  # slot layout: the valid slots and each sample's own write slot
            keep = cache.valid_mask().clone()
            keep[torch.arange(batch, device=keep.device), slots] = True
            # every slot in use (the usual case once contexts are full): no mask, the faster kernel
            mask = None if bool(keep.all()) else keep.repeat_interleave(n, dim=1)[:, None, None, :]  # (B, 1, 1, S * N)
        elif cache is not None and cache.valid is not None:  # a padded batch: no query sees a padding frame
            keep = torch.cat([cache.valid, cache.valid.new_ones(batch, frames)], dim=1).repeat_interleave(n, dim=1)
            mask = keep[:, None, None, :] if mask is None else mask[None, None] & keep[:, None, None, :]  # (B, 1, L_q, L_k)
        keys, values = [], []
        in_place = cache is not None and cache.spare > 0
        for i, block in enumerate(self.blocks):
            past = None if cache is None else (cache.keys[i], cache.values[i])
            tokens, (k, v) = block(tokens, cond, rope, mask, past, in_place, slots)
            keys.append(k)
            values.append(v)
        out = DiTOutput(unpatchify(self.final(tokens, cond), p, self.config.latent_channels, grid_h), prior_guess=guess)
        if self.composite is not None:  # toward the moved previous frame or the conv prior's guess
            mask = torch.sigmoid(unpatchify(self.composite(tokens, cond), p, 1, grid_h).float())  # (B, T, 1, h, w)
            toward = guess if self.config.prior_composite else moved
            out.own_prediction = out.prediction
            out.prediction, out.composite_mask = composite_v(out.prediction, x, noise_level, toward, previous_level, mask), mask
        if self.motion is not None and clean is not None:
            out.motion, out.motion_gate_logit = moved_clean, gate_clean
        if clean is not None and (self.field is not None or self.prior is not None):
            # clean frames 1, 2, ... before each frame (zeros before the sequence)
            shifted = [torch.cat([torch.zeros_like(clean[:, :d]), clean], 1)[:, :frames]
                       for d in range(1, self.config.prior_frames + 1)]
            before, before2 = shifted[0], shifted[1]
            if self.field is not None:
                out.field_motion = self.field(before, before2, action_embedding)
            if self.prior is not None:
                clean_older = torch.stack(shifted[2:], 2) if len(shifted) > 2 else None
                out.prior_next = self.prior(before, before2, action_embedding, clean_older)
        if self.reward_head is not None:
            out.reward = self.reward_head(tokens)
        if self.termination_head is not None:
            out.termination_logit = self.termination_head(tokens)
        if self.state_change_head is not None:
            out.state_change_logit = self.state_change_head(tokens)
        if return_cache:
            new = KVCache(keys, values, n, frame_index.long(), latents=x, noise_level=noise_level)
            if cache is None or slots is not None:  # slot layout: the buffer holds them already; these frames alone
                out.cache = new
            else:
                out.cache = cache.fill_spare(new) if in_place else cache.append(new)
        return out

    @torch.no_grad()
    def build_cache(
        self,
        x: Tensor,
        noise_level: Tensor,
        actions: Tensor | None = None,
        action_mask: Tensor | None = None,
        frame_index: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> KVCache:
        """Encode context frames once: `cache` (if any) extended by the keys/values of `x`'s frames.

        Arguments as in `forward`; context frames are usually clean (noise_level 0).
        """
        return self(x, noise_level, actions, action_mask, frame_index, cache=cache, return_cache=True).cache

    def _action_embedding(self, actions: Tensor | None, mask: Tensor | None, batch: int, frames: int) -> Tensor:
        if actions is None:
            return self.action_encoder.null_embedding(batch, frames)
        if mask is None:
            mask = torch.ones(actions.shape[:3], dtype=torch.bool, device=actions.device)
        return self.action_encoder(actions, mask)

    def _check(self, x, noise_level, actions, action_mask, frame_index, cache) -> tuple[int, int, int, int, int]:
        """Raise ValueError naming the problem when the inputs do not fit the model or each other."""
        c = self.config
        if x.ndim != 5:
            raise ValueError(f"latents must be (B, T, C, h, w), got shape {tuple(x.shape)}")
        batch, frames, channels, height, width = x.shape
        if channels != c.latent_channels:
            raise ValueError(f"latents have {channels} channels, the model expects latent_channels={c.latent_channels}")
        if height % c.patch_size or width % c.patch_size:
            raise ValueError(f"latent size {height}x{width} is not divisible by the patch size {c.patch_size}")
        if noise_level.shape != (batch, frames):
            raise ValueError(f"noise_level has shape {tuple(noise_level.shape)}, expected (B, T) = {(batch, frames)}")
        # A value check reads the tensor back: only where that costs nothing (a CPU tensor, not under torch.compile).
        if (noise_level.device.type == "cpu" and not torch.compiler.is_compiling() and noise_level.numel()
                and not bool(((noise_level >= 0) & (noise_level <= 1)).all())):
            raise ValueError("noise_level must lie in [0, 1] (0 clean, 1 pure noise)")
        if frame_index is not None:
            if frame_index.shape != (batch, frames) or frame_index.is_floating_point():
                raise ValueError(f"frame_index must be integer (B, T) = {(batch, frames)}, got {frame_index.dtype} {tuple(frame_index.shape)}")
        if actions is not None:
            if self.action_encoder is None:
                raise ValueError("this model is action-free (config.action_space is None) but actions were given")
            if actions.shape[:2] != (batch, frames):
                raise ValueError(f"actions have shape {tuple(actions.shape)}, expected (B, T, k, D) with (B, T) = {(batch, frames)}")
        elif action_mask is not None:
            raise ValueError("action_mask given without actions")
        if cache is not None:
            if frame_index is None:
                raise ValueError("frame_index is required with a cache (the new frames' true time indices)")
            if cache.batch_size != batch:
                raise ValueError(f"cache has batch size {cache.batch_size}, latents have {batch}")
            if len(cache.keys) != c.depth:
                raise ValueError(f"cache has {len(cache.keys)} layers, the model has depth {c.depth}")
            n = (height // c.patch_size) * (width // c.patch_size)
            if cache.slots is not None and frames != 1:
                raise ValueError(f"a cache in slot layout takes one new frame per forward, these are {frames}")
            if cache.spare and cache.spare != frames:
                raise ValueError(f"the cache has room for {cache.spare} new frames after its own, these are {frames}")
            if cache.tokens_per_frame != n:
                raise ValueError(f"cache was built from frames of {cache.tokens_per_frame} patches, these have {n}")
        return batch, frames, channels, height, width
