"""A causal spatiotemporal VAE: video frames <-> continuous latent frames.

Space is compressed by ``s`` (4 or 8) and time by ``k`` (1, 2 or 4), causally: the first frame is
encoded alone and later frames in groups of ``k``, so ``T = 1 + m*k`` frames give ``1 + m``
latent frames, an image (``T = 1``) is a one-frame video, and a prefix of frames encodes to a
prefix of latents (decoding likewise). See `worldsim.models.causal_conv` for how each layer keeps
this. Latents are regularised towards N(0, I) by a small KL term; for the diffusion model they are
further standardised per channel with a shift and scale fitted on data and stored as buffers,
so they travel with the weights.

Public layout is ``(B, T, C, H, W)`` with frames in [-1, 1] (see `worldsim.frames` for uint8
conversion); inside, convolutions run on ``(B, C, T, H, W)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from worldsim.metrics import psnr
from worldsim.models.ae_blocks import FrameAttention, FrameGroupNorm, ResBlock
from worldsim.models.causal_conv import CausalConv3d, Downsample, Upsample
from worldsim.models.distributions import DiagonalGaussian
from worldsim.models.latents import num_latent_frames, num_real_frames
from worldsim.models.palette import PaletteHead, palette_targets

SPATIAL_FACTORS = (4, 8)
TEMPORAL_FACTORS = (1, 2, 4)


@dataclass
class AutoencoderConfig:
    """Architecture and loss weights of `VideoAutoencoder` (sizes are in `ae_presets`)."""

    in_channels: int = 3  # RGB frames
    latent_channels: int = 8  # channels per latent pixel; 4-16: more keeps detail, fewer is easier to model
    base_channels: int = 64  # width at full resolution; sets most of the compute
    channel_mults: tuple[int, ...] = (1, 2, 2)  # width multiplier per resolution level; log2(s) + 1 levels
    num_res_blocks: int = 1  # residual blocks per level (encoder and decoder)
    # extra residual blocks at the decoder's full resolution, after the last upsampling; each starts as the identity,
    # so a decoder fine-tune (freeze_encoder) can deepen a trained decoder without changing its output at the start
    decoder_refine_blocks: int = 0
    spatial_factor: int = 4  # s: H and W shrink by s (4 or 8)
    patch: int = 1  # pixels per side folded into channels before the first conv (1, 2 or 4): the convs never run at full resolution
    temporal_factor: int = 2  # k: one latent frame per k real frames after the first (1, 2 or 4)
    time_kernel: int = 3  # temporal extent of the residual convs: how many past frames each conv sees
    norm_groups: int = 32  # GroupNorm groups (capped at the channel count)
    mid_attention: bool = False  # per-frame self-attention at the lowest resolution; costly on CPU
    kl_weight: float = 1e-4  # weight of KL (nats per latent element) against per-pixel reconstruction
    l1_weight: float = 1.0  # weight of mean |recon - x|: sharp edges
    mse_weight: float = 1.0  # weight of mean (recon - x)^2: what PSNR measures
    object_weight: float = 0.0  # extra per-pixel weight where a pixel differs from its frame's median colour (small objects)
    palette: tuple[tuple[int, int, int], ...] = ()  # uint8 RGB colours of a world drawn with few (`worldsim.models.palette`): the decoder picks one per pixel
    palette_weight: float = 1.0  # weight of the per-pixel cross-entropy against the true colour (with a palette)

    def __post_init__(self) -> None:
        self.channel_mults = tuple(self.channel_mults)  # JSON gives lists back
        self.palette = tuple(tuple(int(v) for v in c) for c in self.palette)
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.palette) or len(self.palette) == 1:
            raise ValueError(f"palette must be at least 2 uint8 RGB triples, got {self.palette}")
        if self.spatial_factor not in SPATIAL_FACTORS:
            raise ValueError(f"spatial_factor must be one of {SPATIAL_FACTORS}, got {self.spatial_factor}")
        if self.temporal_factor not in TEMPORAL_FACTORS:
            raise ValueError(f"temporal_factor must be one of {TEMPORAL_FACTORS}, got {self.temporal_factor}")
        if self.patch not in (1, 2, 4) or self.patch > self.spatial_factor:
            raise ValueError(f"patch must be 1, 2 or 4 and at most spatial_factor {self.spatial_factor}, got {self.patch}")
        levels = int(math.log2(self.spatial_factor // self.patch)) + 1
        if len(self.channel_mults) != levels:
            raise ValueError(
                f"spatial_factor {self.spatial_factor} with patch {self.patch} needs {levels} channel_mults (one per "
                f"resolution level), got {len(self.channel_mults)}: {self.channel_mults}"
            )
        if self.time_levels > levels - 1:
            raise ValueError(f"temporal_factor {self.temporal_factor} needs {self.time_levels} downsampling levels, "
                             f"spatial_factor {self.spatial_factor} / patch {self.patch} gives {levels - 1}")
        for ch in self.level_channels:
            if ch % self.groups(ch) != 0:
                raise ValueError(f"level width {ch} is not divisible by norm_groups {self.norm_groups}")
        if self.decoder_refine_blocks < 0:
            raise ValueError(f"decoder_refine_blocks must be >= 0, got {self.decoder_refine_blocks}")
        if self.num_res_blocks < 1 or self.latent_channels < 1 or self.time_kernel < 1:
            raise ValueError("num_res_blocks, latent_channels and time_kernel must be >= 1")

    @property
    def level_channels(self) -> list[int]:
        return [self.base_channels * m for m in self.channel_mults]

    @property
    def time_levels(self) -> int:
        """How many of the downsampling steps (the first ones) also halve time."""
        return int(math.log2(self.temporal_factor))

    def groups(self, channels: int) -> int:
        return min(self.norm_groups, channels)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoencoderConfig:
        """Inverse of `to_dict`; an unknown key is an error (a config from another model or a typo)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown AutoencoderConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)


class Encoder(nn.Module):
    """Frames ``(B, C_in, T, H, W)`` -> posterior moments ``(B, 2*C_lat, 1 + (T-1)/k, H/s, W/s)``."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        chs, tk = cfg.level_channels, cfg.time_kernel
        self.patch = cfg.patch
        self.conv_in = CausalConv3d(cfg.in_channels * cfg.patch**2, chs[0], 3)
        blocks: list[nn.Module] = []
        ch = chs[0]
        for i, out_ch in enumerate(chs):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(ch, out_ch, cfg.groups(out_ch), tk))
                ch = out_ch
            if i < len(chs) - 1:
                blocks.append(Downsample(ch, time=i < cfg.time_levels))  # time shrinks in the first levels: cheaper
        self.down = nn.Sequential(*blocks)
        self.mid = nn.Sequential(
            ResBlock(ch, ch, cfg.groups(ch), tk),
            FrameAttention(ch, cfg.groups(ch)) if cfg.mid_attention else nn.Identity(),
            ResBlock(ch, ch, cfg.groups(ch), tk),
        )
        self.norm_out = FrameGroupNorm(cfg.groups(ch), ch, eps=1e-6)
        self.conv_out = CausalConv3d(ch, 2 * cfg.latent_channels, 3)

    def forward(self, x: torch.Tensor, stream: dict | None = None) -> torch.Tensor:
        """With `stream` (see `worldsim.models.causal_conv`), x is the next chunk of a video being encoded: after
        its first chunk of 1 + n k frames, chunks of whole groups of k frames."""
        x = rearrange(x, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=self.patch, p2=self.patch)
        h = self.conv_in(x, stream)
        for block in (*self.down, *self.mid):
            h = h if isinstance(block, nn.Identity) else block(h, stream)
        return self.conv_out(F.silu(self.norm_out(h)), stream)


class Decoder(nn.Module):
    """Latents ``(B, C_lat, T', h, w)`` -> frames ``(B, C_in, 1 + (T'-1)*k, h*s, w*s)``, the mirror of `Encoder`."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        chs, tk = cfg.level_channels, cfg.time_kernel
        ch = chs[-1]
        self.conv_in = CausalConv3d(cfg.latent_channels, ch, 3)
        self.mid = nn.Sequential(
            ResBlock(ch, ch, cfg.groups(ch), tk),
            FrameAttention(ch, cfg.groups(ch)) if cfg.mid_attention else nn.Identity(),
            ResBlock(ch, ch, cfg.groups(ch), tk),
        )
        blocks: list[nn.Module] = []
        for i in reversed(range(len(chs))):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(ch, chs[i], cfg.groups(chs[i]), tk))
                ch = chs[i]
            if i > 0:
                blocks.append(Upsample(ch, time=i - 1 < cfg.time_levels))  # mirrors Downsample i-1
        self.up = nn.Sequential(*blocks)
        self.refine = nn.Sequential(*(ResBlock(ch, ch, cfg.groups(ch), tk) for _ in range(cfg.decoder_refine_blocks)))
        self.norm_out = FrameGroupNorm(cfg.groups(ch), ch, eps=1e-6)
        self.patch = cfg.patch
        self.conv_out = CausalConv3d(ch, cfg.in_channels * cfg.patch**2, 3)
        self.palette = PaletteHead(cfg.palette, ch, cfg.patch) if cfg.palette else None

    def forward(self, z: torch.Tensor, stream: dict | None = None, logits: bool = False):
        """With `stream` (see `worldsim.models.causal_conv`), z is the next chunk of a video being decoded.

        Returns frames ``(B, C, T, H, W)``; with ``logits=True`` also the palette logits ``(B, K, T, H, W)``
        (None without a palette).
        """
        h = self.conv_in(z, stream)
        for block in (*self.mid, *self.up, *self.refine):
            h = h if isinstance(block, nn.Identity) else block(h, stream)
        features = F.silu(self.norm_out(h))
        x = self.conv_out(features, stream)  # (B, C * p * p, T, h, w)
        pixel_logits = None
        if self.palette is not None:  # picks colours at patch resolution, unfolds only its result
            x, pixel_logits = self.palette(x, features, logits)
        else:
            x = rearrange(x, "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=self.patch, p2=self.patch)
        return (x, pixel_logits) if logits else x


class VideoAutoencoder(nn.Module):
    """Causal video VAE. Frames ``(B, T, 3, H, W)`` in [-1, 1] <-> latents ``(B, 1 + (T-1)/k, C, H/s, W/s)``.

    Buffers ``latent_shift`` and ``latent_scale`` (per channel, fitted with `fit_latent_stats`) make
    ``normalize(z)`` roughly zero-mean unit-variance; they are saved in the state dict.
    """

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        c = cfg.latent_channels
        self.register_buffer("latent_shift", torch.zeros(c))
        self.register_buffer("latent_scale", torch.ones(c))
        self.register_buffer("latent_stats_fitted", torch.tensor(False))  # lets the diffusion side refuse unfitted stats

    # --- shapes -----------------------------------------------------------------------------
    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(T', C, h, w)`` of the latents for ``num_frames`` frames of ``height x width``; checks the sizes."""
        s, k = self.cfg.spatial_factor, self.cfg.temporal_factor
        if num_frames < 1 or (num_frames - 1) % k != 0:
            m = max(num_frames - 1, 0) // k
            raise ValueError(
                f"got T={num_frames} frames, but temporal_factor k={k} needs T = 1 + m*k "
                f"(e.g. {1 + m * k} or {1 + (m + 1) * k}): the first frame is encoded alone, later ones in groups of {k}"
            )
        for name, n in (("height", height), ("width", width)):
            if n % s != 0 or n == 0:
                lo, hi = (n // s) * s, (n // s + 1) * s
                raise ValueError(
                    f"frame {name} {n} is not divisible by spatial_factor s={s} (nearest valid: {lo or hi} or {hi})"
                )
        return num_latent_frames(num_frames, k), self.cfg.latent_channels, height // s, width // s

    def num_frames(self, num_latent_frames: int) -> int:
        """Real frames decoded from ``num_latent_frames`` latent frames: ``1 + (T'-1)*k``."""
        return num_real_frames(num_latent_frames, self.cfg.temporal_factor)

    def _check_frames(self, frames: torch.Tensor) -> None:
        if frames.dtype == torch.uint8:
            raise TypeError("frames are uint8; convert with worldsim.frames.frames_to_float (float in [-1, 1], (B,T,C,H,W))")
        if frames.ndim != 5 or frames.shape[2] != self.cfg.in_channels:
            raise ValueError(
                f"frames must be (B, T, {self.cfg.in_channels}, H, W) floats in [-1, 1], got shape {tuple(frames.shape)}"
            )
        self.latent_shape(frames.shape[1], frames.shape[3], frames.shape[4])

    # --- encode / decode --------------------------------------------------------------------
    def encode(self, frames: torch.Tensor) -> DiagonalGaussian:
        """Frames ``(B, T, C, H, W)`` in [-1, 1] -> posterior over latents ``(B, T', C_lat, H/s, W/s)``."""
        self._check_frames(frames)
        return self._posterior(frames)

    def _posterior(self, frames: torch.Tensor, stream: dict | None = None) -> DiagonalGaussian:
        """The encoder's posterior of frames (B, T, C, H, W); `stream` as in `Encoder.forward`."""
        moments = rearrange(self.encoder(rearrange(frames, "b t c h w -> b c t h w"), stream),
                            "b c t h w -> b t c h w")  # (B, T', 2*C_lat, h, w)
        mean, logvar = moments.chunk(2, dim=2)
        return DiagonalGaussian(mean, logvar)

    def encode_stream(self, frames: torch.Tensor, state: dict | None = None) -> tuple[DiagonalGaussian, dict]:
        """Encode the next frames of videos whose earlier frames were encoded into `state`.

        frames: (B, T, C, H, W) in [-1, 1], 1 + m k of them for a start (state None), then m k: the latents a
        full encode of each whole video would give for them, m (or 1 + m for a start), at a cost that does not
        grow with the video. States stack along the batch as the decoder's (`stack_states`, `split_state`).
        """
        if state is None:
            self._check_frames(frames)
        elif frames.ndim != 5 or frames.shape[1] % self.cfg.temporal_factor or frames.shape[2] != self.cfg.in_channels:
            raise ValueError(f"a continued encode takes (B, m * {self.cfg.temporal_factor}, {self.cfg.in_channels}, H, W) "
                             f"frames, got shape {tuple(frames.shape)}")
        state = {} if state is None else dict(state)
        return self._posterior(frames, state), state

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Raw (not normalised) latents ``(B, T', C_lat, h, w)`` -> frames ``(B, 1 + (T'-1)*k, C, h*s, w*s)`` in about [-1, 1]."""
        if z.ndim != 5 or z.shape[2] != self.cfg.latent_channels:
            raise ValueError(f"latents must be (B, T', {self.cfg.latent_channels}, h, w), got shape {tuple(z.shape)}")
        x = self.decoder(rearrange(z, "b t c h w -> b c t h w"))
        return rearrange(x, "b c t h w -> b t c h w")

    def decode_stream(self, z: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Decode the next latent frames of videos whose earlier latents were decoded into `state`.

        z: raw latents (B, T', C_lat, h, w), the continuation of each video; state: what the last call
        returned (None: the videos start here). Returns (frames (B, F, C, H, W), the new state), with
        F = 1 + (T' - 1) k for a start and T' k after it: the frames a full decode would give for these
        latents, at a cost that does not grow with the video. States of several videos stack along
        the batch (`stack_states`, `split_state`).
        """
        if z.ndim != 5 or z.shape[2] != self.cfg.latent_channels:
            raise ValueError(f"latents must be (B, T', {self.cfg.latent_channels}, h, w), got shape {tuple(z.shape)}")
        state = {} if state is None else dict(state)
        x = self.decoder(rearrange(z, "b t c h w -> b c t h w"), state)
        return rearrange(x, "b c t h w -> b t c h w"), state

    def forward(
        self, frames: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None, logits: bool = False
    ):
        """Reconstruct: returns ``(recon (B, T, C, H, W), posterior)``; ``sample=False`` decodes the posterior mean.

        ``logits=True`` adds the palette logits ``(B, T, K, H, W)`` (None without a palette) as a third item.
        """
        posterior = self.encode(frames)
        z = posterior.sample(generator) if sample else posterior.mode()
        if not logits:
            return self.decode(z), posterior
        x, pixel_logits = self.decoder(rearrange(z, "b t c h w -> b c t h w"), logits=True)
        pixel_logits = None if pixel_logits is None else rearrange(pixel_logits, "b k t h w -> b t k h w")
        return rearrange(x, "b c t h w -> b t c h w"), posterior, pixel_logits

    # --- latent standardisation -------------------------------------------------------------
    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents ``(..., C_lat, h, w)`` -> standardised latents for the diffusion model."""
        return (z - self.latent_shift[:, None, None]) / self.latent_scale[:, None, None]

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize`: standardised ``(..., C_lat, h, w)`` -> raw latents for `decode`."""
        return z * self.latent_scale[:, None, None] + self.latent_shift[:, None, None]

    def set_latent_stats(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        """Store per-channel ``shift`` and ``scale`` (each ``(C_lat,)``, scale > 0)."""
        c = self.cfg.latent_channels
        if shift.shape != (c,) or scale.shape != (c,):
            raise ValueError(f"latent stats must have shape ({c},), got {tuple(shift.shape)} and {tuple(scale.shape)}")
        if not bool((scale > 0).all()) or not bool(torch.isfinite(shift).all()):
            raise ValueError(f"latent scale must be positive and shift finite, got scale={scale.tolist()}")
        self.latent_shift.copy_(shift)
        self.latent_scale.copy_(scale)
        self.latent_stats_fitted.fill_(True)

    @torch.no_grad()
    def fit_latent_stats(self, latents: torch.Tensor) -> None:
        """Fit shift/scale to raw latents ``(B, T', C_lat, h, w)`` (e.g. ``encode(frames).mode()``)."""
        acc = LatentStats(self.cfg.latent_channels)
        acc.update(latents)
        self.set_latent_stats(*acc.result())


def stack_states(states: list[dict]) -> dict:
    """Decoder stream states of single videos -> one state of the batch (same layers, concatenated)."""
    return {key: torch.cat([s[key] for s in states], dim=0) for key in states[0]}


def split_state(state: dict, batch: int) -> list[dict]:
    """A batch's decoder stream state -> one state per video."""
    return [{key: value[b:b + 1] for key, value in state.items()} for b in range(batch)]


class LatentStats:
    """Streaming per-channel mean and std of latents ``(B, T', C, h, w)``, accumulated in float64."""

    MIN_SCALE = 1e-6  # a dead channel must not turn normalize() into a division by zero

    def __init__(self, channels: int):
        self.count = 0
        self.sum = torch.zeros(channels, dtype=torch.float64)
        self.sumsq = torch.zeros(channels, dtype=torch.float64)

    def update(self, latents: torch.Tensor) -> None:
        if latents.ndim != 5 or latents.shape[2] != self.sum.numel():
            raise ValueError(f"latents must be (B, T', {self.sum.numel()}, h, w), got shape {tuple(latents.shape)}")
        x = rearrange(latents.detach().double().cpu(), "b t c h w -> c (b t h w)")
        self.count += x.shape[1]
        self.sum += x.sum(dim=1)
        self.sumsq += x.pow(2).sum(dim=1)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(shift, scale)``, each float32 ``(C,)``."""
        if self.count == 0:
            raise ValueError("no latents seen: cannot compute latent statistics from an empty set")
        mean = self.sum / self.count
        var = (self.sumsq / self.count - mean.pow(2)).clamp_min(0.0)
        return mean.float(), var.sqrt().clamp_min(self.MIN_SCALE).float()


@torch.no_grad()
def fit_latent_stats_from_frames(
    model: VideoAutoencoder,
    batches: Iterable[torch.Tensor],
    sample: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every frames batch ``(B, T, C, H, W)`` in [-1, 1], fit and store the latent shift/scale.

    Use the same encoding (``sample`` or the posterior mean) as the diffusion training will. Returns
    ``(shift, scale)``.
    """
    acc = LatentStats(model.cfg.latent_channels)
    for frames in batches:
        posterior = model.encode(frames)
        acc.update(posterior.sample(generator) if sample else posterior.mode())
    shift, scale = acc.result()
    model.set_latent_stats(shift, scale)
    return shift, scale


OBJECT_THRESHOLD = 0.1  # colour distance (frames in [-1, 1]) from the frame's median beyond which a pixel is "object"


def object_weights(frames: torch.Tensor, extra: float) -> torch.Tensor | None:
    """Per-pixel loss weights ``1 + extra * [pixel far from its frame's median colour]``: (B, T, 1, H, W), mean 1.

    Background (the median colour: sky, grass) dominates whole-frame losses, so small objects (the
    probe world's balls, Crafter's creatures and items) are learned last; this makes each of their
    pixels count ``1 + extra`` times a background pixel. Weights are rescaled to mean 1 per frame, so the loss keeps its
    scale. None when ``extra == 0``.
    """
    if extra <= 0:
        return None
    median = frames.flatten(-2).median(dim=-1).values[..., None, None]  # (B, T, C, 1, 1)
    far = ((frames - median).abs().amax(dim=2, keepdim=True) > OBJECT_THRESHOLD).to(frames.dtype)  # (B, T, 1, H, W)
    weight = 1.0 + extra * far
    return weight / weight.mean(dim=(-2, -1), keepdim=True)


def autoencoder_loss(
    model: VideoAutoencoder, frames: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """VAE loss on frames ``(B, T, C, H, W)`` in [-1, 1]: ``l1_w*L1 + mse_w*MSE + kl_w*KL`` (all means).

    With a palette, ``+ palette_w * CE`` (the per-pixel cross-entropy against the true colour's index).
    Returns the scalar loss and logs (0-d tensors): loss, l1, mse, kl, psnr (dB, data range 2, recon clipped
    to [-1, 1], mean over frames), and with a palette ce and wrong (the share of pixels whose likeliest
    colour is not the true one). With ``object_weight > 0`` the logged l1, mse and ce are the weighted
    ones (what is optimised); psnr is always the plain one.
    """
    cfg = model.cfg
    recon, posterior, pixel_logits = model(frames, sample=True, generator=generator, logits=True)  # (B, T, C, H, W)
    err = recon - frames
    weight = object_weights(frames, cfg.object_weight)  # (B, T, 1, H, W) or None
    l1 = err.abs().mean() if weight is None else (err.abs() * weight).mean()
    mse = err.pow(2).mean() if weight is None else (err.pow(2) * weight).mean()
    kl = posterior.kl().mean()
    loss = cfg.l1_weight * l1 + cfg.mse_weight * mse + cfg.kl_weight * kl
    extra = {}
    if pixel_logits is not None:
        target = palette_targets(frames, cfg.palette)  # (B, T, H, W)
        ce = F.cross_entropy(pixel_logits.flatten(0, 1), target.flatten(0, 1), reduction="none")  # (B*T, H, W)
        ce = ce.mean() if weight is None else (ce * weight.flatten(0, 2)).mean()
        loss = loss + cfg.palette_weight * ce
        extra = {"ce": ce.detach(), "wrong": (pixel_logits.detach().argmax(dim=2) != target).float().mean()}
    with torch.no_grad():
        frame_psnr = psnr(recon.detach().clamp(-1.0, 1.0), frames, data_range=2.0)  # (B, T)
    # detached 0-d tensors: the trainer reads them (a device sync) only at its logging interval
    logs = {"loss": loss.detach(), "l1": l1.detach(), "mse": mse.detach(), "kl": kl.detach(), "psnr": frame_psnr.mean(),
            **extra}
    return loss, logs
