"""The training loop, the same for the autoencoder and the DiT; reads top to bottom in `Trainer.fit`.

One optimizer step = `grad_accum` micro-batches of `batch_size` windows on each of the W ranks.
Everything random derives from `cfg.seed`: the initial weights (same on every rank), the window
order (`ResumableDistributedSampler`), and the noise of the objective (one generator per rank).
Checkpoints hold all of it, so a resumed run continues to the same weights.
"""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.spaces import space_to_json
from worldsim.train import checkpoint as ckpt
from worldsim.train import engine as eng
from worldsim.train import resume
from worldsim.train.config import TrainConfig, field_defaults
from worldsim.train.ema import EMA
from worldsim.train.engine import CheckpointError
from worldsim.export import load_export
from worldsim.train.resume import check_compatible, jsonable
from worldsim.train.sampler import ResumableDistributedSampler
from worldsim.train.tasks import DiTTask, VAETask
from worldsim.train.tensorboard import RunLogger
from worldsim.train.latent_cache import LatentWindowDataset, build_cache, open_cache
from worldsim.models.latents import num_latent_frames
from worldsim.train.precision import autocast, cpu_autocast
from worldsim.train.validation import CurveLog, run_holdout
from worldsim.train.warm_start import warm_start

KEYS = ["obs", "action", "has_action", "reward", "terminated"]
VIDEO_SEED = 1234  # progress videos draw from their own generator: logging never changes training


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    logs: dict[str, float] = field(default_factory=dict)
    export_dir: Path | None = None
    interrupted: bool = False


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warm-up, then constant or cosine."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    progress = (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps)
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Trainer:
    """Builds data, task, engine and EMA from a `TrainConfig` (resuming if asked); `fit()` trains."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.rank, self.world = eng.init_distributed(cfg.dist.port)
        self.device = eng.device()
        resume_from = self._resume_target()
        meta = None if resume_from is None else ckpt.read_meta(*resume_from)

        # Data
        store = EpisodeStore.open(cfg.data, "r")
        self.frame_size = tuple(store.frame_size)
        self.action_space_json = None if store.action_space is None else space_to_json(store.action_space)
        self.fps = store.fps
        rewards = store.read("reward", 0, store.num_frames) if "reward" in store.keys() else np.zeros(0)
        self.real_world = {"env_id": store.env_id, "env_kwargs": store.attrs.get("env_kwargs", {}),  # what it imitates
                           "rewarded": bool(np.any(np.nan_to_num(rewards) != 0))}  # does that world ever pay?
        self.holdout = run_holdout(store.num_episodes, cfg.holdout_episodes, bool(cfg.validation.every), meta)
        self.train_episodes = [e for e in range(store.num_episodes) if e not in set(self.holdout)]
        store.close()
        self.dataset = WindowDataset(cfg.data, cfg.window, cfg.frame_skip, keys=KEYS, episodes=self.train_episodes)
        self.global_batch = cfg.batch_size * cfg.grad_accum * self.world
        self.sampler = ResumableDistributedSampler(len(self.dataset), self.rank, self.world, cfg.seed, self.global_batch)

        # Task and model: the same seed on every rank gives the same initial weights.
        torch.manual_seed(cfg.seed)
        self.task = self._make_task()
        self.task.device = self.device
        self.ae_key = self.task.autoencoder_key  # None for an autoencoder run; a DiT's latent space, hashed once
        self.latent_cache = None
        if self.ae_key is not None:  # a DiT: it reads the latents of a frozen autoencoder
            self.task.autoencoder.to(self.device)
            if cfg.latent_cache:
                self.dataset = self._latent_dataset(self.train_episodes)
                self.sampler = ResumableDistributedSampler(len(self.dataset), self.rank, self.world, cfg.seed,
                                                           self.global_batch)
        self.autocast = cpu_autocast(cfg.dist.precision, self.device, cfg.task)
        self.warm_start = None
        if cfg.init_from and resume_from is None:
            self.warm_start = warm_start(cfg.init_from, cfg.task, self.task.model, cfg.model, self.ae_key,
                                         cfg.init_other_latents)
            new = self.warm_start["new_parameters"]
            self._print(f"warm start from {cfg.init_from}: {self.warm_start['loaded']} tensors loaded"
                        + (f", {len(new)} new ones keep their initialisation ({', '.join(new[:4])}...)" if new else ""))
        self._set_seeds()

        # Nothing is written before the checks above and this one pass.
        if resume_from is not None:
            check_compatible(meta, cfg, self.task.export_meta()["model_config"], resume_from[0] / resume_from[1],
                             field_defaults(type(self.task.model_config)))
            if self.ae_key is not None and meta.get("autoencoder_key") not in (None, self.ae_key):
                raise CheckpointError(f"{resume_from[0] / resume_from[1]} was trained on the latents of another autoencoder "
                                      f"(its weights changed at {cfg.vae}); a DiT cannot continue on a new latent space: "
                                      "train it anew (another run_dir)")
        self.run_dir = self._make_run_dir(resume_from)
        load_tag = None if resume_from is None else resume.load_tag(meta, resume_from, self.world,
                                                                    cfg.dist.zero_stage, self.rank)
        universal = resume_from is not None and load_tag != resume_from[1]
        self.engine = eng.build_engine(self.task.model, cfg, load_universal=universal)
        self.named_params = [(n, p) for n, p in self.engine.module.named_parameters() if p.requires_grad]
        self.ema = EMA(self.named_params, cfg.ema_decay)
        self.step = 0
        if resume_from is None:
            with eng.gathered(self.engine, [p for _, p in self.named_params]):
                self.ema.initialize(self.named_params)
        else:
            self._load(resume_from, load_tag, meta)
        self.logger = RunLogger(self.run_dir, enabled=self.rank == 0 and cfg.tensorboard, fps=self.fps)
        self.validator = self._make_validator() if self.rank == 0 else None
        self.curve = CurveLog(self.run_dir, self.step) if self.validator is not None else None
        self._interrupted = False
        self._grad_norm: float | None = None

    # ------------------------------------------------------------------ setup
    def _resume_target(self) -> tuple[Path, str] | None:
        if not self.cfg.resume:
            return None
        return ckpt.resolve(self.cfg.resume)

    def _make_run_dir(self, resume_from: tuple[Path, str] | None) -> Path:
        cfg = self.cfg
        if resume_from is not None:
            path = resume_from[0].parent  # <run>/checkpoints/<tag>: keep writing into the same run
        elif cfg.run_dir:
            path = Path(cfg.run_dir)
        else:
            name = cfg.name or self.task.run_name
            path = base = Path(cfg.out) / name / time.strftime("%Y%m%d-%H%M%S")
            n = 1
            while self.rank == 0 and path.exists():  # two runs started in the same second
                n += 1
                path = base.with_name(f"{base.name}-{n}")
        path = Path(eng.broadcast(str(path)))  # rank 0's clock decides the timestamp
        if self.rank == 0:
            if resume_from is None and ckpt.checkpoints_dir(path).is_dir() and any(ckpt.checkpoints_dir(path).iterdir()):
                raise ValueError(f"run folder {path} already holds checkpoints: resume it with resume={path} "
                                 "or choose another run_dir (one folder per run)")
            path.mkdir(parents=True, exist_ok=True)
            (path / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
        eng.barrier()
        return path

    def _make_task(self) -> VAETask | DiTTask:
        cfg = self.cfg
        if cfg.task == "vae":
            return VAETask(cfg, self.frame_size, self.action_space_json)
        models, meta = load_export(cfg.vae)  # an autoencoder export, or a DiT export (its autoencoder)
        if tuple(meta["frame_size"]) != self.frame_size:
            raise ValueError(f"the autoencoder was trained on {tuple(meta['frame_size'])} frames, the store has {self.frame_size}")
        task = DiTTask(cfg, self.frame_size, self.action_space_json, models["autoencoder"], meta)
        if not bool(task.autoencoder.latent_stats_fitted):
            task.fit_latent_stats(self._first_batches(cfg.latent_stats_batches))
        return task

    def _latent_dataset(self, episodes: list[int]) -> LatentWindowDataset:
        """Windows of cached latents (rank 0 encodes what the cache lacks; the others wait, then open it)."""
        cfg, ae = self.cfg, self.task.autoencoder
        if self.rank == 0:
            cache = build_cache(cfg.data, ae, self.device, progress=cfg.progress, key=self.ae_key)
            self._print(f"latents of {cache.episodes} episodes cached in {cache.path}")
        eng.barrier()
        if self.rank != 0:
            cache = open_cache(cfg.data, ae, self.ae_key)
        self.latent_cache = cache
        data = LatentWindowDataset(cache, cfg.data, num_latent_frames(cfg.window, self.task.k), episodes,
                                   state_change=cfg.objective.state_change_key or None,
                                   reappear=cfg.reappear_state or None, repeat=cfg.reappear_repeat,
                                   hidden=cfg.reappear_hidden, ball_weight=cfg.objective.ball_weight, camera=cfg.camera_state)
        if cfg.reappear_state and cfg.reappear_repeat > 1:
            what = f"a whole hiding (seen, {cfg.reappear_hidden}+ hidden, seen)" if cfg.reappear_hidden else "a rise"
            self._print(f"{data.reappear_windows} windows show {what} of {cfg.reappear_state}: drawn "
                        f"{cfg.reappear_repeat} times as often ({len(data)} windows listed)")
        return data

    def _make_validator(self):
        """Held-out metrics (rank 0), or None when validation is off or no episode is held out."""
        cfg = self.cfg
        if not cfg.validation.every or not self.holdout:
            return None
        try:
            return self.task.validator(self.holdout, self.latent_cache, self.device, progress=cfg.progress)
        except ValueError as e:  # e.g. every held-out episode shorter than the window
            self._warn(f"validation off: {e}")
            return None

    def validate(self) -> dict[str, float] | None:
        """Score the EMA weights on the held-out windows; log to TensorBoard, the console and validation.jsonl."""
        if self.validator is None:
            return None
        t0 = time.perf_counter()
        metrics = self.validator(self.ema_model().to(self.device))
        row = self.curve.write(self.step, self.step * self.global_batch, metrics, time.perf_counter() - t0)
        self.logger.scalars(self.step, {f"val/{k}": v for k, v in metrics.items()})
        self.logger.flush()
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self._print(f"validation step {self.step} (cpu {row['cpu_s'] / 60:.1f} min): {shown}")
        return metrics

    def _set_seeds(self, step: int | None = None) -> None:
        """Seed Python, numpy, torch and the objective's noise generator for this rank (the one seeding block).

        `step`: reseed a run resumed at another world size (its saved generator states belong to other ranks).
        """
        seed = self.cfg.seed * 1000 + self.rank
        if step is not None:
            seed = seed * 1_000_003 + step
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        if step is None:
            self.noise = torch.Generator(device=self.device)  # on the device: draws happen there
        self.noise.manual_seed(seed)

    def _first_batches(self, n: int) -> list[dict[str, Any]]:
        """The first `n` batches of windows in store order (deterministic; for latent statistics and videos)."""
        loader = DataLoader(self.dataset, batch_size=self.cfg.batch_size, shuffle=False, drop_last=False,
                            num_workers=self.cfg.num_workers)
        out = []
        for batch in loader:
            out.append(batch)
            if len(out) >= n:
                break
        return out

    def _load(self, where: tuple[Path, str], load_tag: str, meta: dict[str, Any]) -> None:
        directory, tag = where
        eng.load_checkpoint(self.engine, directory, load_tag)
        with eng.gathered(self.engine, [p for _, p in self.named_params]):
            loaded = ckpt.weights_checksum([p for _, p in self.named_params])
        if not ckpt.checksums_match(loaded, meta["weights_checksum"]):
            raise CheckpointError(f"loading {directory / load_tag} did not restore the saved weights "
                                  f"(checksum {loaded} != saved {meta['weights_checksum']}); refusing to continue")
        ema_state = ckpt.read_ema(directory / tag)
        if ema_state is None:
            raise CheckpointError(f"checkpoint {directory / tag} has no ema.safetensors")
        self.ema.load_state_dict(ema_state)
        self.step = int(meta["step"])
        self.sampler.set_position(meta["sampler"]["epoch"], meta["sampler"]["consumed"])
        rng = ckpt.read_rank_rng(directory / tag, self.rank) if meta["world_size"] == self.world else None
        if rng is not None:
            ckpt.set_rng_state(rng, self.noise)
        else:
            self._set_seeds(self.step)
            if self.rank == 0:
                warnings.warn(f"resumed at {self.world} processes from a checkpoint of {meta['world_size']}: weights, "
                              "optimizer and data order continue; the noise draws are reseeded", stacklevel=2)
        eng.barrier()
        if self.rank == 0:
            ckpt.remove_newer(directory, tag)
        eng.barrier()
        self._print(f"resumed from {directory / tag} at step {self.step}")

    # ------------------------------------------------------------------ the loop
    def _batches(self):
        while True:
            loader = DataLoader(self.dataset, batch_size=self.cfg.batch_size, sampler=self.sampler, drop_last=True,
                                num_workers=self.cfg.num_workers)
            for batch in loader:
                self.sampler.advance(self.cfg.batch_size * self.world)
                yield batch

    def fit(self) -> TrainResult:
        cfg = self.cfg
        batches = self._batches()
        previous = signal.signal(signal.SIGINT, self._on_sigint) if _main_thread() else None
        bar = self._progress_bar()
        logs: dict[str, float] = {}
        step_logs: list[dict[str, torch.Tensor]] = []
        nonfinite, last_saved = 0, self.step
        window_start, window_samples, window_tokens = time.perf_counter(), 0, 0
        try:
            while self.step < cfg.steps:
                eng.set_lr(self.engine, lr_at(cfg, self.step))
                step_logs = []  # detached 0-d tensors: read (a device sync) only when they are shown
                while len(step_logs) < cfg.grad_accum:
                    batch = next(batches)
                    with autocast(self.autocast, self.device):
                        loss, micro_logs = self.task.loss(self.engine, batch, self.noise)
                    if eng.any_rank(not bool(torch.isfinite(loss))):
                        nonfinite += 1
                        self._warn(f"step {self.step}: non-finite loss ({float(loss.detach())}); batch skipped "
                                   f"({nonfinite} in a row, abort at {cfg.max_nonfinite})")
                        if nonfinite >= cfg.max_nonfinite:
                            raise NonFiniteLossError(
                                f"{nonfinite} non-finite losses in a row at step {self.step}: training diverged; lower "
                                f"optim.lr or check the data, then resume from the last checkpoint in {self.run_dir}")
                        continue
                    nonfinite = 0
                    self.engine.backward(loss)
                    if self.engine.is_gradient_accumulation_boundary():
                        self._grad_norm = eng.full_grad_norm(self.engine)  # before clipping and the step
                    self.engine.step()
                    step_logs.append(micro_logs)
                    window_samples += _batch_len(batch) * self.world
                    window_tokens += self.task.tokens(batch) * self.world
                self.step += 1
                with eng.gathered(self.engine, [p for _, p in self.named_params]):
                    self.ema.update(self.named_params)
                shown = self.step % cfg.log_every == 0 or self.step == cfg.steps
                if bar is not None:
                    if shown:
                        elapsed = max(time.perf_counter() - window_start, 1e-9)
                        bar.set_postfix(loss=f"{_mean_logs(step_logs)['loss']:.4f}",
                                        samples_s=f"{window_samples / elapsed:.1f}")
                    bar.update(1)
                if shown:
                    logs = _mean_logs(step_logs)
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    self._log_scalars(logs, window_samples / elapsed, window_tokens / elapsed)
                    window_start, window_samples, window_tokens = time.perf_counter(), 0, 0
                if cfg.video_every and self.step % cfg.video_every == 0:
                    self.log_video()
                if cfg.validation.every and (self.step % cfg.validation.every == 0 or self.step == cfg.steps):
                    self.validate()
                    eng.barrier()
                interrupted = eng.any_rank(self._interrupted)
                if self.step % cfg.checkpoint_every == 0 or interrupted:
                    self.save()
                    last_saved = self.step
                if interrupted:
                    self._print(f"interrupted at step {self.step}; checkpoint saved in {self.run_dir}; "
                                f"continue with resume={self.run_dir}")
                    return TrainResult(self.run_dir, self.step, _mean_logs(step_logs) if step_logs else logs,
                                       interrupted=True)
            if last_saved != self.step:
                self.save()
            export_dir = self.export() if cfg.export else None
            return TrainResult(self.run_dir, self.step, _mean_logs(step_logs) if step_logs else logs, export_dir)
        finally:
            if bar is not None:
                bar.close()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self.logger.close()

    # ------------------------------------------------------------------ pieces
    def _on_sigint(self, signum, frame) -> None:
        if self._interrupted:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._interrupted = True
        self._print("Ctrl-C: saving a checkpoint after this step (press again to stop at once)")

    def _progress_bar(self):
        if self.rank != 0 or not self.cfg.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.cfg.steps, initial=self.step, desc=f"train {self.cfg.task}", unit="step",
                    dynamic_ncols=True, file=sys.stderr)

    def _log_scalars(self, logs: dict[str, float], samples_s: float, tokens_s: float) -> None:
        values = {f"loss/{k}": v for k, v in eng.mean_over_ranks(logs).items()}
        values["train/lr"] = self.engine.optimizer.param_groups[0]["lr"]
        norm = eng.grad_norm(self.engine)
        norm = self._grad_norm if norm is None else norm
        if norm is not None:
            values["train/grad_norm"] = norm
        values["perf/samples_per_s"] = samples_s
        values["perf/tokens_per_s"] = tokens_s
        values["perf/peak_memory_mb"] = eng.max_over_ranks(eng.peak_memory_mb(self.device))
        self.logger.scalars(self.step, values)

    def ema_model(self) -> torch.nn.Module:
        """A plain (non-DeepSpeed) model holding the EMA weights and the module's buffers (every rank)."""
        model = self.task.build_model()
        persistent = set(model.state_dict())
        state = dict(self.ema.shadow)
        for name, buf in self.engine.module.named_buffers():
            if name in persistent:
                state[name] = buf.detach().cpu()
        for name, param in self.engine.module.named_parameters():  # frozen ones (freeze_encoder) have no EMA
            if not param.requires_grad:
                state[name] = param.detach().cpu()
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"EMA weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        return model.eval()

    def log_video(self) -> Path | None:
        if self.rank != 0 or not self.cfg.tensorboard:
            return None
        batch = self._first_batches(1)[0]
        generator = torch.Generator().manual_seed(VIDEO_SEED)
        video = self.task.video(self.ema_model().to(self.device), batch, generator)
        return self.logger.video(self.step, self.task.video_tag, video)

    def save(self) -> Path:
        """A checkpoint of this step (all ranks call it)."""
        directory = ckpt.checkpoints_dir(self.run_dir)
        tag = ckpt.tag_for(self.step)
        with eng.gathered(self.engine, [p for _, p in self.named_params]):
            checksum = ckpt.weights_checksum([p for _, p in self.named_params])
        meta = {
            "step": self.step,
            "sampler": self.sampler.state(),
            "world_size": self.world,
            "zero_stage": self.cfg.dist.zero_stage,
            "task": self.cfg.task,
            "model_config": jsonable(self.task.export_meta()["model_config"]),
            "config": jsonable(self.cfg.to_dict()),
            "weights_checksum": checksum,
            "holdout": self.holdout,
        }
        if self.ae_key is not None:
            meta["autoencoder_key"] = self.ae_key
        folder = directory / tag
        ckpt.write_rank_files(folder, self.rank, ckpt.rng_state(self.noise),
                              self.ema.state_dict() if self.rank == 0 else None, meta)
        self.engine.save_checkpoint(str(directory), tag=tag, client_state={"worldsim_step": self.step},
                                    save_latest=False)
        eng.barrier()
        if self.rank == 0:
            ckpt.write_manifest_and_latest(directory, tag)
            ckpt.prune(directory, self.cfg.keep_checkpoints, protect=tag)
        eng.barrier()
        self._print(f"saved checkpoint {folder} (step {self.step})")
        return folder

    def export(self) -> Path | None:
        """Rank 0 writes ``<run>/export``: EMA weights (+ fitted latent stats for the autoencoder)."""
        out = None
        if self.rank == 0:
            model = self.ema_model()
            extra = {"window": self.cfg.window, "frame_skip": self.cfg.frame_skip, "fps": self.fps, "world": self.real_world,
                     "train": {"steps": self.step, "seed": self.cfg.seed, "data": str(self.cfg.data),
                               "run_dir": str(self.run_dir),
                               # a resumed run's warm start: the config it was resumed with (it names the same export)
                               "init_from": self.warm_start or ({"from": self.cfg.init_from} if self.cfg.init_from else None)}}
            out = self.task.write_export(self.run_dir / "export", model, extra,
                                         lambda: self._first_batches(self.cfg.latent_stats_batches), self._print)
            self._print(f"exported inference weights to {out}")
        eng.barrier()
        path = eng.broadcast(None if out is None else str(out))
        return None if path is None else Path(path)

    def _print(self, message: str) -> None:
        if self.rank == 0:
            print(f"[worldsim train] {message}", flush=True)

    def _warn(self, message: str) -> None:
        if self.rank == 0:
            warnings.warn(message, RuntimeWarning, stacklevel=2)


def _mean_logs(step_logs: list[dict[str, Any]]) -> dict[str, float]:
    """Floats of a step's micro-batch logs (0-d tensors or floats), averaged: the one place logs are read back."""
    return {k: float(np.mean([float(m[k]) for m in step_logs])) for k in step_logs[0]}


def _batch_len(batch: dict[str, Any]) -> int:
    return (batch["latents"] if "latents" in batch else batch["obs"]).shape[0]


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()



def train(cfg: TrainConfig) -> TrainResult:
    """Build a `Trainer` from `cfg` and run it to `cfg.steps`."""
    return Trainer(cfg).fit()
