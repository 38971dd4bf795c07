"""Validation inside training, on held-out episodes: what the learning curves are made of.

Every `ValidationConfig.every` optimizer steps the trainer scores the EMA weights (what the export
will hold) on a fixed set of windows from episodes that never enter training, and logs the figures
to TensorBoard (``val/...``), the console and ``<run>/validation.jsonl`` (one JSON line per
validation with the step, the samples seen and the process CPU seconds, so curves can be drawn
against compute). Everything is deterministic: the same windows and the same noise every time.

Autoencoder (task=vae):
- ``psnr``: reconstruction PSNR (dB, posterior mean, clipped to [-1, 1]) of held-out frames.
- ``wrong_colour`` (worlds drawn with a few colours, `worldsim.models.palette.find_palette`): the share
  of pixels decoded nearer another colour than the true one.
- ``balls_found`` (stores with probe-world ground truth): the fraction of fully visible balls that
  the probe detector (`worldsim.eval.probes.detect_balls`) still finds in the reconstructions.

Diffusion transformer (task=dit), each window's last latent frame predicted from the clean real
ones before it:
- ``tf_x0_mse``: teacher-forced error: MSE of the clean-latent estimate from one network call at
  noise levels 0.25, 0.5 and 0.75 (normalised latent units; 0 is perfect).
- ``next_psnr``: the frame sampled with `sample_steps` Euler steps from fixed noise, decoded,
  against the real frames (PSNR in dB over the k real frames the latent covers).
- ``action_sensitivity``: mean absolute pixel difference (in [0, 1]) between that frame and the
  one sampled from the same noise with another window's actions; 0 means actions are ignored.
- ``action_win``: how often the true actions' frame is closer to the truth than the other
  actions' frame (ties count half): 0.5 for a model that ignores actions, 1 for one that follows them
  wherever the two actions differ visibly.
- ``balls_found`` (probe world): fully visible balls found in the sampled frames.
- ``copy_psnr``: the same PSNR for a model that repeats the last real context frame (a constant
  of the held-out windows; a window whose frames do not change counts as 60 dB): a DiT below it has
  not yet learned what stays still.
- ``ceiling_psnr``: the true next latent decoded the same way: what a perfect DiT would score through
  this autoencoder (``next_psnr`` cannot pass it), and ``latent_copy_psnr``: the last context latent
  repeated, decoded: the copy bar in the DiT's own terms (constants of the windows, like ``copy_psnr``).
- ``rollout_psnr``: the last `rollout_steps` latent frames generated one after another, each from the
  real context and the frames generated before it (the simulator's autoregressive rollout), the
  last one decoded and compared with the real frames: where drift into blur shows up (and what
  noise on the context, `context_noise_max`, is meant to prevent). ``rollout_balls_found`` likewise.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldsim.data.store import EpisodeStore
from worldsim.diffusion.objective import add_noise, predict_x0
from worldsim.diffusion.samplers import sample_euler
from worldsim.frames import frames_to_float, frames_to_uint8
from worldsim.models.palette import find_palette, palette_targets
from worldsim.metrics import psnr

PROBE_STATE_KEYS = ("present", "position", "radius", "color", "visible")
TEACHER_LEVELS = (0.25, 0.5, 0.75)
COPY_PSNR_CAP = 60.0  # dB for a window whose frames are identical (copying is perfect there)
SEED = 4321  # validation noise: its own generator, so validating never changes training
DECODE_LATENTS = 4  # latent frames decoded for the pixel metrics (the new one and 3 of context): decoding dominates the cost


@dataclass
class ValidationConfig:
    """When and on how much held-out data training validates (see `worldsim.train.validation`)."""

    every: int = 250  # optimizer steps between validations (and one at the end); 0 disables
    windows: int = 16  # held-out windows scored each time, evenly spread over the held-out episodes
    sample_steps: int = 4  # task=dit: Euler steps of the sampled next-frame metrics
    rollout_steps: int = 4  # task=dit: latent frames generated autoregressively for rollout_psnr; below 2 skips it

    def __post_init__(self) -> None:
        if self.every < 0 or self.windows < 1 or self.sample_steps < 1 or self.rollout_steps < 0:
            raise ValueError("validation.every and rollout_steps must be >= 0, validation.windows and sample_steps >= 1")


def holdout_episodes(num_episodes: int, requested: int | list[int] | None) -> list[int]:
    """Indices of the held-out episodes, spread evenly over the store (so a store filled by several
    collections, e.g. an exploring policy then random play, is validated on all of them).
    None: about 5% (at least 1) from 4 episodes on; a list: exactly those episodes (to compare runs)."""
    if isinstance(requested, (list, tuple)) or hasattr(requested, "__iter__"):
        chosen = sorted({int(e) for e in requested})
        if any(not 0 <= e < num_episodes for e in chosen) or len(chosen) >= num_episodes:
            raise ValueError(f"holdout_episodes={chosen}: indices must lie in [0, {num_episodes}) and leave one to train on")
        return chosen
    n = (max(1, round(0.05 * num_episodes)) if num_episodes >= 4 else 0) if requested is None else requested
    if n < 0 or (n and n >= num_episodes):
        raise ValueError(f"holdout_episodes={n}: the store has {num_episodes} episodes and training needs at least one")
    if n == 0:
        return []
    return [int(round((i + 0.5) * num_episodes / n - 0.5)) for i in range(n)]


def run_holdout(num_episodes: int, requested: int | list[int] | None, validating: bool,
                saved: dict[str, Any] | None = None) -> list[int]:
    """The held-out episodes of a run: those a resumed run started with (`saved`, its checkpoint meta),
    else chosen now by `holdout_episodes`; none when not validating."""
    if saved is not None:
        if "holdout" in saved:
            return [int(e) for e in saved["holdout"]]
        # a checkpoint from before the held-out episodes were saved: the store's last ones, the rule of that time
        n = len(holdout_episodes(num_episodes, requested)) if validating else 0
        return list(range(num_episodes - n, num_episodes))
    return holdout_episodes(num_episodes, requested) if validating else []


def evenly(n_items: int, n: int) -> list[int]:
    """n indices spread evenly over range(n_items) (all of them when n >= n_items)."""
    if n >= n_items:
        return list(range(n_items))
    return np.linspace(0, n_items - 1, n).round().astype(int).tolist()


def balls_found(frames: np.ndarray, state: dict[str, np.ndarray]) -> tuple[int, int]:
    """(fully visible balls the detector finds in `frames` (T, H, W, 3) uint8, fully visible balls)."""
    from worldsim.eval.probes import ProbeScoreConfig, detect_balls, fully_visible

    cfg = ProbeScoreConfig()
    visible = fully_visible(state, cfg)  # (T, B)
    seen = detect_balls(frames, state, cfg).seen  # (T, B)
    return int((seen & visible).sum()), int(visible.sum())


def _read_state(store: EpisodeStore, start: int, stop: int) -> dict[str, np.ndarray] | None:
    keys = [f"state/{k}" for k in PROBE_STATE_KEYS]
    if not all(k in store.keys() for k in keys):
        return None
    rows = store.read_rows(keys, start, stop)
    return {k.split("/", 1)[1]: v for k, v in rows.items()}


class VAEValidator:
    """Reconstruction PSNR (and balls found) on fixed held-out windows of real frames."""

    def __init__(self, store_path: str, window: int, episodes: list[int], cfg: ValidationConfig,
                 device: torch.device) -> None:
        from worldsim.data.dataset import WindowDataset

        data = WindowDataset(store_path, window, keys=["obs"], episodes=episodes)
        picks = evenly(len(data), cfg.windows)
        self.obs = torch.stack([data[i]["obs"] for i in picks])  # (V, T, H, W, 3) uint8
        store = EpisodeStore.open(store_path, "r")
        try:
            starts = [int(data.starts[i]) for i in picks]
            self.states = [_read_state(store, s, s + window) for s in starts]
        finally:
            store.close()
        self.device = device
        try:  # a world drawn with a few colours: also count pixels decoded nearer a wrong one
            self.palette = find_palette(self.obs.numpy())
            self.true_colours = palette_targets(frames_to_float(self.obs), self.palette).to(device)  # (V, T, H, W)
        except ValueError:
            self.palette = None

    @torch.no_grad()
    def __call__(self, model: Any) -> dict[str, float]:
        frames = frames_to_float(self.obs).to(self.device)  # (V, T, 3, H, W)
        recon, _ = model(frames, sample=False)
        logs = {"psnr": psnr(recon.float().clamp(-1, 1), frames, data_range=2.0).mean().item()}
        if self.palette is not None:
            logs["wrong_colour"] = (palette_targets(recon.float(), self.palette) != self.true_colours).float().mean().item()
        if self.states[0] is not None:
            found, total = 0, 0
            images = frames_to_uint8(recon.float()).cpu().numpy()  # (V, T, H, W, 3)
            for img, state in zip(images, self.states):
                f, t = balls_found(img, state)
                found, total = found + f, total + t
            logs["balls_found"] = found / max(total, 1)
        return logs


class DiTValidator:
    """Next-frame metrics of the DiT on fixed held-out latent windows (see the module docstring)."""

    def __init__(self, dataset: Any, store_path: str, cfg: ValidationConfig, autoencoder: Any,
                 device: torch.device, has_actions: bool) -> None:
        picks = evenly(len(dataset), cfg.windows)
        items = [dataset[i] for i in picks]
        self.latents = torch.stack([it["latents"] for it in items])  # (V, T', C, h, w)
        self.actions = torch.stack([it["action"] for it in items]) if has_actions else None  # (V, T', k, D)
        self.mask = torch.stack([it["action_mask"] for it in items]) if has_actions else None  # (V, T', k)
        self.k = dataset.k
        store = EpisodeStore.open(store_path, "r")
        try:
            rows = [dataset.rows(i) for i in picks]
            self.real = torch.stack([torch.from_numpy(store.read("obs", a, b)) for a, b in rows])  # (V, T, H, W, 3)
            self.states = [_read_state(store, a, b) for a, b in rows]
        finally:
            store.close()
        self.cfg, self.autoencoder, self.device = cfg, autoencoder, device
        real = frames_to_float(self.real)  # (V, T, 3, H, W)
        copied = real[:, -self.k - 1:-self.k].expand(-1, self.k, -1, -1, -1)
        per_window = psnr(copied, real[:, -self.k:], data_range=2.0).mean(dim=1)
        self.copy_psnr = per_window.clamp(max=COPY_PSNR_CAP).mean().item()  # identical frames would be +inf
        with torch.no_grad():
            truth = self._decode_tail(self.latents.to(device))
            repeated = self._decode_tail(torch.cat([self.latents[:, :-1], self.latents[:, -2:-1]], dim=1).to(device))
        tail = real[:, -self.k:].to(device)
        self.ceiling_psnr = psnr(truth, tail, data_range=2.0).mean().item()
        self.latent_copy_psnr = psnr(repeated, tail, data_range=2.0).mean().item()

    def _decode(self, window: torch.Tensor) -> torch.Tensor:
        """Normalised latents (V, T', C, h, w) -> their last `DECODE_LATENTS` decoded, float (V, T, 3, H, W) in [-1, 1]."""
        window = window[:, -DECODE_LATENTS:]
        return self.autoencoder.decode(self.autoencoder.denormalize(window)).float().clamp(-1, 1)

    def _decode_tail(self, window: torch.Tensor) -> torch.Tensor:
        """The last k decoded frames (V, k, 3, H, W) of `window`, decoded as `_sample` decodes."""
        return self._decode(window)[:, -self.k:]

    def _sample(self, model: Any, actions: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        """The last latent frame sampled from the real context; the window's tail decoded, float (V, T, 3, H, W).

        Only the last `DECODE_LATENTS` latent frames are decoded: the causal decoder's view of the
        earlier past is cut, which costs a little PSNR, the same for every run and every step.
        """
        x0 = self.latents.to(self.device)
        noise = torch.randn(x0[:, -1:].shape, generator=torch.Generator().manual_seed(SEED + 1)).to(self.device)
        new = sample_euler(model, tuple(noise.shape), steps=self.cfg.sample_steps, noise=noise, context=x0[:, :-1],
                           actions=actions, action_mask=mask)
        return self._decode(torch.cat([x0[:, :-1], new.to(x0.dtype)], dim=1))

    def _rollout(self, model: Any, horizon: int, actions: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        """The last `horizon` latent frames generated one at a time from the real ones before; decoded tail (V, T, 3, H, W)."""
        x0 = self.latents.to(self.device)
        frames = x0.shape[1]
        window = x0[:, :frames - horizon]
        for h in range(horizon):
            n = window.shape[1] + 1
            noise = torch.randn(x0[:, :1].shape, generator=torch.Generator().manual_seed(SEED + 10 + h)).to(self.device)
            new = sample_euler(model, tuple(noise.shape), steps=self.cfg.sample_steps, noise=noise, context=window,
                               actions=None if actions is None else actions[:, :n],
                               action_mask=None if mask is None else mask[:, :n])
            window = torch.cat([window, new.to(x0.dtype)], dim=1)
        return self._decode(window)

    def _balls(self, frames: torch.Tensor) -> float:
        """Fraction of fully visible balls found in the last k decoded frames (V, k, 3, H, W) of each window."""
        found, total = 0, 0
        images = frames_to_uint8(frames).cpu().numpy()  # (V, k, H, W, 3)
        for img, state in zip(images, self.states):
            f, t = balls_found(img, {key: val[-self.k:] for key, val in state.items()})
            found, total = found + f, total + t
        return found / max(total, 1)

    @torch.no_grad()
    def __call__(self, model: Any) -> dict[str, float]:
        x0 = self.latents.to(self.device)
        actions = None if self.actions is None else self.actions.to(self.device)
        mask = None if self.mask is None else self.mask.to(self.device)
        v, frames = x0.shape[:2]
        g = torch.Generator().manual_seed(SEED)
        errors = []
        for level in TEACHER_LEVELS:
            t = torch.zeros(v, frames, device=self.device)
            t[:, -1] = level
            noise = torch.randn(x0.shape, generator=g).to(self.device)
            x_t = torch.where(t[:, :, None, None, None] > 0, add_noise(x0, noise, t), x0)
            pred = model(x_t, t, actions, mask).prediction.float()
            errors.append((predict_x0(x_t[:, -1:], pred[:, -1:], t[:, -1:]) - x0[:, -1:]).pow(2).mean().item())
        logs = {"tf_x0_mse": float(np.mean(errors))}
        real = frames_to_float(self.real).to(self.device)[:, -self.k:]  # (V, k, 3, H, W)
        sampled = self._sample(model, actions, mask)[:, -self.k:]
        score = psnr(sampled, real, data_range=2.0).mean(dim=1)  # (V,)
        logs["next_psnr"] = score.mean().item()
        logs["copy_psnr"] = self.copy_psnr
        logs["ceiling_psnr"] = self.ceiling_psnr
        logs["latent_copy_psnr"] = self.latent_copy_psnr
        if actions is not None and v > 1:
            other_actions, other_mask = actions.clone(), mask.clone()
            other_actions[:, -1], other_mask[:, -1] = actions.roll(1, 0)[:, -1], mask.roll(1, 0)[:, -1]
            other = self._sample(model, other_actions, other_mask)[:, -self.k:]
            logs["action_sensitivity"] = ((sampled - other).abs().mean() / 2).item()  # [-1, 1] -> [0, 1] units
            other_score = psnr(other, real, data_range=2.0).mean(dim=1)
            wins = (score > other_score).float() + 0.5 * (score == other_score).float()
            logs["action_win"] = wins.mean().item()
        if self.states[0] is not None:
            logs["balls_found"] = self._balls(sampled)
        horizon = min(self.cfg.rollout_steps, frames - 1)
        if horizon > 1:
            rolled = self._rollout(model, horizon, actions, mask)[:, -self.k:]
            logs["rollout_psnr"] = psnr(rolled, real, data_range=2.0).mean().item()
            if self.states[0] is not None:
                logs["rollout_balls_found"] = self._balls(rolled)
        return logs


class CurveLog:
    """``<run>/validation.jsonl``: one line per validation; CPU seconds carry over a resumed run."""

    def __init__(self, run_dir: Path, step: int) -> None:
        self.path = Path(run_dir) / "validation.jsonl"
        kept = []
        if self.path.is_file():  # a resumed run: drop lines past the checkpoint, continue the clocks
            kept = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            kept = [row for row in kept if row["step"] <= step]
            self.path.write_text("".join(json.dumps(row) + "\n" for row in kept))
        self.cpu0 = (kept[-1]["cpu_s"] if kept else 0.0) - time.process_time()
        self.wall0 = (kept[-1]["wall_s"] if kept else 0.0) - time.perf_counter()

    def write(self, step: int, samples: int, metrics: dict[str, float], val_seconds: float) -> dict[str, Any]:
        row = {"step": step, "samples": samples, "cpu_s": round(self.cpu0 + time.process_time(), 2),
               "wall_s": round(self.wall0 + time.perf_counter(), 2), "val_s": round(val_seconds, 2), **metrics}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        return row
