"""Typed configs of the trainer: what `worldsim train-vae` and `worldsim train` compose from conf/.

One `TrainConfig` drives both tasks ("vae": the autoencoder on frames; "dit": the diffusion
transformer plus reward/termination heads on latents of a frozen, exported autoencoder). Library
code only ever sees these dataclasses; Hydra overrides fill them at the entry point.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from worldsim.config import check_port, check_seed
from worldsim.diffusion.objective import ObjectiveConfig
from worldsim.train.context_sampling import ContextSamplingConfig
from worldsim.train.validation import ValidationConfig

TASKS = ("vae", "dit")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("constant", "cosine")


def check_holdout(value: Any) -> None:
    """holdout_episodes: null (about 5%), a count >= 0, or a list of episode indices >= 0."""
    items = list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]
    if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in items):
        raise ValueError(f"holdout_episodes must be null (about 5% of the episodes), a count >= 0 or a list of "
                         f"episode indices >= 0, got {value!r}")


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule."""

    lr: float = 3e-4  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.99)  # Adam moments; 0.99 (not 0.999) reacts faster on short CPU runs
    eps: float = 1e-8
    weight_decay: float = 0.0  # decoupled (AdamW); 0 suits small models trained briefly
    warmup_steps: int = 100  # linear warm-up from 0 to lr over these optimizer steps
    schedule: str = "constant"  # after warm-up: constant | cosine (to min_lr_ratio * lr at the last step)
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.lr <= 0 or self.warmup_steps < 0 or self.grad_clip < 0:
            raise ValueError("optim.lr must be > 0, warmup_steps and grad_clip >= 0")


@dataclass
class DistConfig:
    """DeepSpeed: ZeRO stage, offload, precision. See `worldsim.train.ds_config`."""

    zero_stage: int = 0  # 0 plain data parallel | 1 optimizer states | 2 + gradients | 3 + parameters sharded
    offload_optimizer: bool = False  # optimizer states (and step) on the CPU (stage >= 1)
    offload_param: bool = False  # parameters on the CPU between uses (stage 3 only)
    precision: str = "auto"  # auto: bf16 where the hardware multiplies it natively (GPUs; CPUs with AMX/AVX512-BF16, as autocast), else fp32 | fp32 | bf16
    torch_adam: bool = True  # torch's AdamW instead of DeepSpeed's fused Adam: no 50 s C++ JIT compile on CPU
    port: int = 29500  # MASTER_PORT when running as one process without a launcher (and none is set)

    def __post_init__(self) -> None:
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"dist.zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"dist.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.offload_param and self.zero_stage != 3:
            raise ValueError("dist.offload_param needs dist.zero_stage=3 (only stage 3 partitions parameters)")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("dist.offload_optimizer needs dist.zero_stage >= 1")
        check_port(self.port, "dist.port", allow_zero=False)


@dataclass
class TrainConfig:
    """`worldsim train-vae` / `worldsim train`: one run of the trainer."""

    task: str = "vae"  # vae: the autoencoder | dit: the diffusion transformer on latents of `vae`
    data: str = MISSING  # episode store (worldsim collect / import-video)
    vae: str | None = None  # export folder of a trained autoencoder, or of a DiT (its autoencoder) (task=dit only)
    model: str = "small"  # size preset: worldsim.models.ae_presets (vae) or worldsim.models.presets (dit)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # preset fields to change, e.g. {depth: 4}
    reward_head: bool = True  # task=dit: predict each latent frame's summed reward
    termination_head: bool = True  # task=dit: predict whether the episode terminated within each latent frame
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)  # task=dit: noise levels, context prefix, loss weights
    context: ContextSamplingConfig = field(default_factory=ContextSamplingConfig)  # task=dit: rollout-like context index sets
    window: int = 9  # real frames per training window: 1 + m*k for the autoencoder's time factor k
    latent_cache: bool = True  # task=dit: encode the store once (kept in <store>/latents/<autoencoder hash>) instead of every step
    # task=dit (latent_cache): windows in which this recorded state rises from <= 0 to > 0 in some slot between two
    # latent frames (the probe world's per-ball `visible`: a hidden ball comes back into view) are drawn
    # `reappear_repeat` times as often, so a rare event the model must learn weighs more (worldsim.train.latent_cache);
    # `reappear_hidden` m >= 1: only windows that also show it before it hid, then m or more latent frames hidden, then
    # seen again (what went in, and for how long, is in the window)
    reappear_state: str | None = None
    reappear_repeat: int = 1
    reappear_hidden: int = 0
    # task=dit: the store state holding where the view is, (x, y) in patches (Crafter: player_pos), read at each latent
    # frame's last real frame; world heads then see where the view went, not where the actions asked it to go (a
    # blocked move does not scroll; a simulator still sums the actions), and objective.recall_weight which places
    # were seen before (any DiT)
    camera_state: str | None = None
    holdout_episodes: Any = None  # N episodes spread over the store never train, they validate; None: ~5% (>= 1 from 4 episodes); or a list of episode indices
    validation: ValidationConfig = field(default_factory=ValidationConfig)  # held-out metrics during training
    frame_skip: int = 1  # rows between consecutive frames of a window
    batch_size: int = 8  # windows per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step
    num_workers: int = 0  # DataLoader worker processes per rank (the window order stays deterministic)
    steps: int = 1000  # optimizer steps in total (a resumed run continues to this number)
    optim: OptimConfig = field(default_factory=OptimConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    ema_decay: float = 0.999  # EMA of the weights, exported for inference; 0 exports the raw weights
    seed: int = 0  # everything random (init, sampler order, noise) derives from it
    out: str = "runs"  # runs go to <out>/<name>/<timestamp> (a resumed run keeps its folder)
    name: str | None = None  # run name; None: train-vae or train
    run_dir: str | None = None  # exact folder for this run, overriding out/name/timestamp
    resume: str | None = None  # a run folder (its latest checkpoint) or a checkpoint tag folder to continue
    init_from: str | None = None  # warm start of a new run from an export's weights (parameters it lacks keep their init)
    init_other_latents: bool = False  # task=dit with init_from: allow an export trained on another autoencoder's latents (a starting point only)
    freeze_encoder: bool = False  # task=vae with init_from: train the decoder only; latents, their stats and any DiT trained on them stay valid
    checkpoint_every: int = 500  # optimizer steps between DeepSpeed checkpoints (and one at the end)
    keep_checkpoints: int = 2  # newest checkpoints kept; 0 keeps all
    log_every: int = 10  # steps between TensorBoard scalars
    video_every: int = 500  # steps between real-vs-model videos in TensorBoard; 0 disables
    max_nonfinite: int = 5  # consecutive non-finite losses before the run aborts (each is skipped)
    latent_stats_batches: int = 8  # batches encoded to fit the autoencoder's latent scale/shift
    export: bool = True  # write the inference export (EMA weights, safetensors + JSON) at the end
    progress: bool = True  # progress bar with loss and throughput (rank 0)
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.task == "dit" and not self.vae:
            raise ValueError("task=dit needs vae=EXPORT_FOLDER (a trained autoencoder, from worldsim train-vae)")
        for name in ("window", "frame_skip", "batch_size", "grad_accum", "steps", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_seed(self.seed)
        if not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 0:
            raise ValueError(f"keep_checkpoints must be >= 0 (0 keeps all), got {self.keep_checkpoints!r}")
        check_holdout(self.holdout_episodes)
        if self.freeze_encoder and (self.task != "vae" or not self.init_from):
            raise ValueError("freeze_encoder=true fine-tunes the decoder of a trained autoencoder: it needs task=vae "
                             "(worldsim train-vae) and init_from=EXPORT")
        if self.task == "dit" and self.latent_cache and self.frame_skip != 1:
            raise ValueError(f"latent_cache=true encodes consecutive rows; frame_skip={self.frame_skip} needs latent_cache=false")
        if self.camera_state and not (self.task == "dit" and self.latent_cache):
            raise ValueError(f"camera_state={self.camera_state!r} needs task=dit with latent_cache=true")
        if self.objective.needs_recalled and not (self.camera_state or self.model_overrides.get("world_heads")):
            raise ValueError("objective.recall_weight and recall_own_weight need a camera that tells which places were "
                             "seen before: camera_state=KEY (a store state) or model_overrides.world_heads")
        if self.reappear_repeat < 1 or (self.reappear_state and not (self.task == "dit" and self.latent_cache)) \
                or self.reappear_hidden < 0 or (self.reappear_hidden and not self.reappear_state):
            raise ValueError(f"reappear_repeat must be >= 1, reappear_state needs task=dit with latent_cache=true and "
                             f"reappear_hidden must be >= 0 (> 0 needs reappear_state), got {self.reappear_repeat}, "
                             f"{self.reappear_state!r}, {self.reappear_hidden} (task={self.task})")
        if self.objective.ball_weight > 0 and not (self.task == "dit" and self.latent_cache):
            raise ValueError("objective.ball_weight reads the balls beside the cached latents: it needs task=dit with "
                             f"latent_cache=true (task={self.task}, latent_cache={self.latent_cache})")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Fields that may differ between a run and its resumption; anything else must match.
RESUMABLE_CHANGES = frozenset({
    "steps", "resume", "run_dir", "out", "name", "checkpoint_every", "keep_checkpoints", "log_every",
    "video_every", "max_nonfinite", "progress", "tensorboard", "export", "dist", "latent_stats_batches",
    "num_workers", "validation", "init_from", "init_other_latents",
    "vae",  # another export of the same encoder (a fine-tuned decoder): the trainer compares the latent keys
})


def incompatible_fields(saved: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any] | None = None) -> list[str]:
    """Names of fields (dotted) whose values differ and must not change on resume.

    A field the saved config lacks (added to worldsim since) is compatible when it holds its default
    (`defaults`: the config's field defaults, nested like it).
    """
    out = []
    defaults = defaults or {}
    for key in sorted(set(saved) | set(current)):
        if key in RESUMABLE_CHANGES:
            continue
        if key not in saved and key in defaults and _norm(current.get(key)) == _norm(defaults[key]):
            continue
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict) and key != "model_overrides":
            sub = defaults.get(key) if isinstance(defaults.get(key), dict) else None
            out += [f"{key}.{k}" for k in incompatible_fields(a, b, sub)]
        elif _norm(a) != _norm(b):
            out.append(key)
    return out


def field_defaults(cls: type) -> dict[str, Any]:
    """A dataclass's field defaults as a nested dict (default factories called; fields without one left out)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


def _norm(v: Any) -> Any:
    """Tuples and lists compare equal (JSON turns one into the other)."""
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v
