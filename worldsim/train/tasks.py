"""What is trained: the autoencoder task and the DiT task. Each maps a batch of windows to a loss.

A task owns the model it trains (built from a preset), turns a `WindowDataset` batch into the
model's inputs, and knows how to show progress as a video (real frames beside the model's output)
and what the export records. The trainer (`worldsim.train.trainer`) is the same for both.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from einops import repeat
from torch import Tensor, nn

from worldsim.data.store import EpisodeStore
from worldsim.diffusion.objective import diffusion_loss
from worldsim.export import write_export
from worldsim.diffusion.samplers import sample_euler
from worldsim.frames import frames_to_float, frames_to_uint8
from worldsim.models.ae_presets import autoencoder_config
from worldsim.models.autoencoder import AutoencoderConfig, VideoAutoencoder, autoencoder_loss, fit_latent_stats_from_frames
from worldsim.models.camera import camera_positions, recalled_patches
from worldsim.models.dit import DiT, DiTConfig
from worldsim.models.palette import find_palette
from worldsim.models.presets import dit_config
from worldsim.train.config import TrainConfig
from worldsim.train.context_sampling import select_frames
from worldsim.train.latent_cache import LatentWindowDataset, LatentCache, build_cache
from worldsim.train.latent_cache import autoencoder_key as latent_key
from worldsim.train.validation import DiTValidator, VAEValidator
from worldsim.models.latents import latent_actions, latent_rewards, latent_terminated, num_latent_frames

Batch = dict[str, Any]
ROLLOUT_STEPS = 8  # Euler steps of the progress video: enough to see whether the model follows actions


def check_model_overrides(overrides: dict[str, Any], config_cls: type, what: str) -> None:
    """`model_overrides` may only name fields of the model's config; ValueError naming the unknown ones and the known."""
    known = sorted(f.name for f in dataclasses.fields(config_cls))
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"model_overrides: the {what} has no field {', '.join(map(repr, unknown))}; "
                         f"its fields are {', '.join(known)}")


def store_palette(store_path: str, blocks: int = 32, rows: int = 64) -> tuple[tuple[int, int, int], ...]:
    """`find_palette` on `blocks` runs of `rows` frames spread over the store; ValueError naming the store for a textured world."""
    store = EpisodeStore.open(store_path, "r")
    try:
        n = store.num_frames
        starts = np.unique(np.linspace(0, max(n - rows, 0), blocks).astype(np.int64))
        obs = np.concatenate([store.read("obs", int(a), min(int(a) + rows, n)) for a in starts])
    finally:
        store.close()
    try:
        return find_palette(obs)
    except ValueError as e:
        raise ValueError(f"model_overrides.palette=auto: {store_path}: {e}") from None


@torch.no_grad()
def own_newest_context(module: Callable, x0: Tensor, actions: Tensor | None, mask: Tensor | None, frame_index: Tensor,
                       context_frames: int, generator: torch.Generator, prob: float, frames: int = 1,
                       reencode: Callable[[Tensor, Tensor, int], Tensor] | None = None,
                       camera: Tensor | None = None) -> Tensor:
    """x0 (B, T, C, h, w) with, in a `prob` share of the samples, the newest `frames` context frames replaced by the
    model's own 1-step rollout of them (each from pure noise given the frames before it, its own earlier ones
    included), as a rollout feeds back (self-forcing). At least the first context frame stays real.

    `reencode(sampled (n, 1, C, h, w), use (B,) bool, j)`, where given: what the context holds instead of the
    sampled frame j of the n samples chosen by `use` (as a simulator served with `reencode` sees it). `camera`
    (B, T, 2): the frames' view origins for a DiT with world heads."""
    frames = min(frames, context_frames - 1)
    rows = range(context_frames - frames, context_frames)
    noises = [torch.randn(x0[:, j:j + 1].shape, generator=generator, device=generator.device, dtype=x0.dtype)
              for j in rows]  # drawn for every sample, then the choice: the generator's order of earlier versions
    use = (torch.rand(x0.shape[0], generator=generator, device=generator.device) < prob).to(x0.device)
    own = x0[use].clone()
    if not len(own):
        return x0
    actions = None if actions is None else actions[use]
    mask = None if mask is None else mask[use]
    frame_index = frame_index[use]
    camera = None if camera is None else camera[use]
    for j, noise in zip(rows, noises):
        noise = noise.to(x0.device)[use]
        denoiser = module if camera is None else functools.partial(module, camera=camera[:, :j + 1])
        sampled = sample_euler(denoiser, tuple(noise.shape), steps=1, noise=noise, context=own[:, :j],
                               actions=None if actions is None else actions[:, :j + 1],
                               action_mask=None if mask is None else mask[:, :j + 1],
                               frame_index=frame_index[:, :j + 1]).to(x0.dtype)  # what a 1-step rollout makes
        own[:, j:j + 1] = sampled if reencode is None else reencode(sampled, use, j).to(x0.dtype)
    out = x0.clone()
    out[use] = own
    return out


def _model_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


class VAETask:
    """Train `VideoAutoencoder` on windows of real frames; fit its latent scale/shift at the end."""

    kind = "autoencoder"
    run_name = "train-vae"  # default run folder name (runs/<run_name>/<timestamp>)
    video_tag = "video/reconstruction"  # TensorBoard tag of the task's videos
    autoencoder_key = None  # the latent space a DiT is bound to; an autoencoder run has none
    device = torch.device("cpu")  # set by the trainer to the engine's device

    def __init__(self, cfg: TrainConfig, frame_size: tuple[int, int], action_space_json: dict | None) -> None:
        self.cfg = cfg
        check_model_overrides(cfg.model_overrides, AutoencoderConfig, "autoencoder config")
        overrides = dict(cfg.model_overrides)
        if overrides.get("palette") == "auto":  # the colours the store's frames are drawn with
            overrides["palette"] = store_palette(cfg.data)
        self.model_config = autoencoder_config(cfg.model, **overrides)
        self.frame_size = frame_size
        self.action_space_json = action_space_json
        model = VideoAutoencoder(self.model_config)
        try:
            num_latent_frames(cfg.window, self.model_config.temporal_factor)
        except ValueError as e:
            raise ValueError(f"window={cfg.window}: {e} (autoencoder preset {cfg.model!r})") from None
        model.latent_shape(cfg.window, *frame_size)  # raises naming frame size problems
        if cfg.freeze_encoder:
            model.encoder.requires_grad_(False)
        self.model = model

    def validator(self, holdout: list[int], latent_cache: LatentCache | None, device: torch.device,
                  progress: bool = False) -> VAEValidator:
        """Held-out reconstruction metrics on frames of the `holdout` episodes (no latent space involved)."""
        return VAEValidator(self.cfg.data, self.cfg.window, holdout, self.cfg.validation, device)

    def build_model(self) -> VideoAutoencoder:
        """A fresh model of the same architecture (for the EMA copy and the export)."""
        return VideoAutoencoder(self.model_config)

    def loss(self, module: Callable, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """obs uint8 (B, T, H, W, 3) -> autoencoder_loss (L1 + MSE + KL) and its logs."""
        frames = frames_to_float(batch["obs"]).to(self.device, _model_dtype(self.model))  # (B, T, 3, H, W) in [-1, 1]
        return autoencoder_loss(module, frames, generator)

    def tokens(self, batch: Batch) -> int:
        """Latent positions in the batch (T' * h * w per window)."""
        t, _, h, w = self.model.latent_shape(batch["obs"].shape[1], *batch["obs"].shape[2:4])
        return batch["obs"].shape[0] * t * h * w

    @torch.no_grad()
    def video(self, model: VideoAutoencoder, batch: Batch, generator: torch.Generator) -> Tensor:
        """Real frames beside their reconstruction by `model`: uint8 (T, H, 2W, 3)."""
        real = batch["obs"][:1]  # (1, T, H, W, 3)
        recon, _ = model(frames_to_float(real).to(self.device, _model_dtype(model)), sample=False)
        return torch.cat([real[0], frames_to_uint8(recon[0]).cpu()], dim=2)

    @torch.no_grad()
    def finish(self, model: VideoAutoencoder, batches: list[Batch]) -> dict[str, Any]:
        """Fit the latent shift/scale of `model` (the EMA weights) from `batches`; returns them for the logs.

        With a frozen encoder the warm start's statistics stay: the latents must not move under a DiT.
        """
        if self.cfg.freeze_encoder:
            return {"latent_shift": model.latent_shift.tolist(), "latent_scale": model.latent_scale.tolist()}
        frames = (frames_to_float(batch["obs"]).to(self.device, _model_dtype(model)) for batch in batches)
        shift, scale = fit_latent_stats_from_frames(model, frames)
        return {"latent_shift": shift.tolist(), "latent_scale": scale.tolist()}

    def export_meta(self) -> dict[str, Any]:
        return {"model_config": self.model_config.to_dict()}

    def write_export(self, folder: Path, model: VideoAutoencoder, extra: dict[str, Any], batches: Callable[[], list[Batch]],
                     log: Callable[[str], None]) -> Path:
        """Fit the latent statistics of `model` (the EMA weights) from `batches()` and export it alone."""
        stats = self.finish(model.to(self.device), batches())
        log(f"fitted latent shift {_short(stats['latent_shift'])} scale {_short(stats['latent_scale'])}")
        return write_export(folder, model.cpu(), None, self.frame_size, self.action_space_json, extra)


class DiTTask:
    """Train `DiT` (with reward/termination heads) on normalised latents of a frozen autoencoder."""

    kind = "dit"
    run_name = "train"
    video_tag = "video/rollout"
    device = torch.device("cpu")  # set by the trainer to the engine's device

    def __init__(self, cfg: TrainConfig, frame_size: tuple[int, int], action_space_json: dict | None,
                 autoencoder: VideoAutoencoder, autoencoder_meta: dict[str, Any]) -> None:
        self.cfg = cfg
        self.frame_size = frame_size
        self.action_space_json = action_space_json
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.autoencoder_meta = autoencoder_meta
        ae = autoencoder.cfg
        self.k = ae.temporal_factor
        if cfg.frame_skip != 1 and action_space_json is not None:
            raise ValueError(f"frame_skip={cfg.frame_skip} drops the actions of skipped rows, which the DiT needs: "
                             "use frame_skip=1 (or an action-free store)")
        num_latent_frames(cfg.window, self.k)
        _, c, h, w = autoencoder.latent_shape(cfg.window, *frame_size)
        check_model_overrides(cfg.model_overrides, DiTConfig, "DiT config")
        overrides = {"latent_channels": c, "action_space": action_space_json, "action_substeps": self.k,
                     "reward_head": cfg.reward_head, "termination_head": cfg.termination_head,
                     "state_change_head": bool(cfg.objective.state_change_key), **cfg.model_overrides}
        if cfg.objective.state_change_key and not cfg.latent_cache:
            raise ValueError("objective.state_change_key reads its targets with the cached latents: use latent_cache=true")
        self.model_config = dit_config(cfg.model, **overrides)
        p = self.model_config.patch_size
        if h % p or w % p:
            raise ValueError(f"latent frames are {h}x{w} (frames {frame_size} / s={ae.spatial_factor}), not divisible "
                             f"by the DiT patch size {p}: use model_overrides.patch_size or another frame size")
        self.model = DiT(self.model_config)
        self.tokens_per_frame = (h // p) * (w // p)

    @functools.cached_property
    def autoencoder_key(self) -> str:
        """The latent space this DiT learns: `latent_cache.autoencoder_key`, hashed once (after any stats fit)."""
        return latent_key(self.autoencoder)

    def validator(self, holdout: list[int], latent_cache: LatentCache | None, device: torch.device,
                  progress: bool = False) -> DiTValidator:
        """Held-out next-frame metrics; the windows come from the latent cache (built here if training reads frames)."""
        cfg = self.cfg
        cache = latent_cache or build_cache(cfg.data, self.autoencoder, device, progress=progress, key=self.autoencoder_key)
        data = LatentWindowDataset(cache, cfg.data, num_latent_frames(cfg.window, self.k), holdout)
        return DiTValidator(data, cfg.data, cfg.validation, self.autoencoder, device,
                            self.model_config.action_space is not None)

    def build_model(self) -> DiT:
        return DiT(self.model_config)

    def fit_latent_stats(self, batches: list[Batch]) -> None:
        """Fit the autoencoder's latent shift/scale from data when its export has none."""
        fit_latent_stats_from_frames(self.autoencoder, (frames_to_float(b["obs"]).to(self.device) for b in batches))
        self.__dict__.pop("autoencoder_key", None)  # the statistics are part of the latent space

    @torch.no_grad()
    def latents(self, batch: Batch) -> Tensor:
        """obs uint8 (B, T, H, W, 3) -> normalised latents float32 (B, T', C, h, w) (posterior mean)."""
        frames = frames_to_float(batch["obs"]).to(self.device)
        with torch.autocast(self.device.type, enabled=False):  # the frozen autoencoder stays fp32 (the cache's precision)
            return self.autoencoder.normalize(self.autoencoder.encode(frames).mode())

    def conditioning(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        """Actions (B, T', k, D) and mask (B, T', k), or (None, None) for an action-free model."""
        if self.model_config.action_space is None:
            return None, None
        actions, mask = latent_actions(batch["action"], batch["has_action"], self.k)
        return actions.to(self.device), mask.to(self.device)

    def inputs(self, batch: Batch) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
        """(latents (B, T', C, h, w), actions (B, T', k, D), mask (B, T', k), reward (B, T'), terminated (B, T')).

        A batch of cached latents (`worldsim.train.latent_cache.LatentWindowDataset`) is used as it is;
        a batch of frames is encoded here (slow on a CPU: the reason for the cache).
        """
        cfg = self.cfg
        if "latents" in batch:
            x0 = batch["latents"].to(self.device)
            actions, mask = (None, None) if self.model_config.action_space is None else (
                batch["action"].to(self.device), batch["action_mask"].to(self.device))
            reward = batch["reward"].to(self.device) if cfg.reward_head else None
            term = batch["terminated"].to(self.device) if cfg.termination_head else None
            return x0, actions, mask, reward, term
        x0 = self.latents(batch)
        actions, mask = self.conditioning(batch)
        reward = latent_rewards(batch["reward"], self.k).to(self.device) if cfg.reward_head else None
        term = latent_terminated(batch["terminated"], self.k).to(self.device) if cfg.termination_head else None
        return x0, actions, mask, reward, term

    def loss(self, module: Callable, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        x0, actions, mask, reward, term = self.inputs(batch)
        x0 = x0.to(_model_dtype(self.model))  # (B, T', C, h, w)
        change = batch["state_change"].to(self.device) if "state_change" in batch else None
        balls = batch["ball_pixels"].to(self.device) if "ball_pixels" in batch else None
        frame_index, context_frames = None, None
        # the view's origin at each frame (world heads, the recall weights): where it went (`camera_state`), else
        # summed over the whole window's moves (a DiT with world heads)
        camera = None
        if (self.model_config.world_heads or self.cfg.objective.needs_recalled) and "camera" in batch:
            camera = batch["camera"].to(self.device)
        elif self.model_config.world_heads and actions is not None:
            camera = camera_positions(actions, mask, self.model.camera_table)  # the DiT's table (a buffer)
        keep = select_frames(self.cfg.context, x0.shape[1], generator)  # (n,) latent frame positions or None
        if keep is not None:
            pick = keep.to(self.device)
            window = x0
            x0 = x0[:, pick]  # (B, n, C, h, w)
            actions, mask = (None, None) if actions is None else (actions[:, pick], mask[:, pick])
            reward = None if reward is None else reward[:, pick]
            term = None if term is None else term[:, pick]
            frame_index = repeat(pick, "t -> b t", b=x0.shape[0])  # true positions: rotary sees the gaps
            camera = None if camera is None else camera[:, pick]
            context_frames = len(pick) - self.cfg.context.targets  # exactly the rollout's split
            change = None if change is None else change[:, pick]
            balls = None if balls is None else balls[:, pick]
            if self.cfg.objective.own_context_prob > 0 and context_frames >= 2:
                reencode = (functools.partial(self.reencoded, window, pick) if self.cfg.objective.own_context_reencode
                            else None)
                x0 = own_newest_context(module, x0, actions, mask, frame_index, context_frames, generator,
                                        self.cfg.objective.own_context_prob, self.cfg.objective.own_context_frames,
                                        reencode, camera if self.model_config.world_heads else None)
        recalled = None  # recall_weight, recall_own_weight: the latent pixels only memory of older frames can draw
        if camera is not None and self.cfg.objective.needs_recalled:
            p = self.model_config.patch_size
            grid = recalled_patches(camera, x0.shape[-2] // p, x0.shape[-1] // p)  # (B, T, gh, gw)
            recalled = grid.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)[:, :, None]
        return diffusion_loss(module, x0, actions, mask, frame_index, generator, self.cfg.objective, reward, term,
                              context_frames=context_frames, state_change=change, ball_pixels=balls,
                              camera=camera if self.model_config.world_heads else None, recalled=recalled)

    @torch.no_grad()
    def reencoded(self, window: Tensor, pick: Tensor, sampled: Tensor, use: Tensor, j: int) -> Tensor:
        """The sampled latent (n, 1, C, h, w) of picked frame j, for the windows (B, T', C, h, w) chosen by `use`, as
        a simulator served with `reencode` holds it: decoded after the real latent frames before it in the window
        (`objective.own_context_reencode` latent frames decoded in all), drawn as uint8 frames, encoded again."""
        ae = self.autoencoder
        end = int(pick[j]) + 1
        video = window[use, max(0, end - self.cfg.objective.own_context_reencode):end].clone()
        video[:, -1:] = sampled
        with torch.autocast(self.device.type, enabled=False):  # the frozen autoencoder stays fp32
            drawn = frames_to_uint8(ae.decode(ae.denormalize(video.float())))
            return ae.normalize(ae.encode(frames_to_float(drawn)).mode())[:, -1:]

    def tokens(self, batch: Batch) -> int:
        if "latents" in batch:
            return batch["latents"].shape[0] * batch["latents"].shape[1] * self.tokens_per_frame
        return batch["obs"].shape[0] * num_latent_frames(batch["obs"].shape[1], self.k) * self.tokens_per_frame

    @torch.no_grad()
    def video(self, model: DiT, batch: Batch, generator: torch.Generator) -> Tensor:
        """Real frames beside the model's rollout from the same first half (context) and actions: uint8 (T, H, 2W, 3).

        The context latent frames are decoded too, so both halves show the whole window.
        """
        one = {key: v[:1] for key, v in batch.items() if torch.is_tensor(v)}
        x0, actions, mask, _, _ = self.inputs(one)  # (1, T', C, h, w), ...
        frames = x0.shape[1]
        ctx = max(1, frames // 2)
        new = sample_euler(model, (1, frames - ctx, *x0.shape[2:]), steps=ROLLOUT_STEPS, generator=generator,
                           context=x0[:, :ctx], actions=actions, action_mask=mask)
        rollout = torch.cat([x0[:, :ctx], new.to(x0.dtype)], dim=1)  # (1, T', C, h, w)
        decoded = self.autoencoder.decode(self.autoencoder.denormalize(rollout))  # (1, T, 3, H, W)
        # Cached latents carry no frames: the left half is then the autoencoder's decoding of the real latents.
        real = one["obs"][0] if "obs" in one else frames_to_uint8(self.autoencoder.decode(self.autoencoder.denormalize(x0))[0]).cpu()
        return torch.cat([real, frames_to_uint8(decoded[0]).cpu()], dim=2)

    def export_meta(self) -> dict[str, Any]:
        return {"model_config": dataclasses.asdict(self.model_config)}

    def write_export(self, folder: Path, model: DiT, extra: dict[str, Any], batches: Callable[[], list[Batch]],
                     log: Callable[[str], None]) -> Path:
        """Export `model` (the EMA weights) with the autoencoder it was trained on."""
        return write_export(folder, self.autoencoder.cpu(), model, self.frame_size, self.action_space_json, extra)


def _short(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values[:4]) + (", ...]" if len(values) > 4 else "]")
