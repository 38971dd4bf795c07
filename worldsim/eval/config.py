"""Typed configuration of `worldsim eval` (filled from conf/eval.yaml by the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field

from worldsim.config import check_seed
from worldsim.sim.config import check_dtype


@dataclass
class EvalConfig:
    """What `worldsim eval` measures and where it writes the report."""

    checkpoint: str | None = None  # DiT export folder; None: real vs real only (the ceilings)
    out: str = "runs/eval"  # report folder (created; files in it are overwritten)
    world: str = "probe"  # real world for real vs simulated: probe | crafter (must match the model)
    size: int | None = None  # frame size; None: the model's (64 without a model)
    seeds: int = 8  # held-out episodes per comparison
    first_seed: int = 100_000  # held out from collection, which seeds episodes 0, 1, ...
    steps: int = 16  # latent steps simulated after the context
    horizons: list[int] = field(default_factory=lambda: [1, 4, 16, 64])  # latent steps, clipped to `steps`
    schemes: list[str] = field(default_factory=lambda: ["autoregressive", "long-range", "hierarchical"])
    context_frames: int = 4  # latent frames of context (1 + (n - 1) k real frames)
    context_budget: int | None = None  # latent frames the simulator attends to per step (SimConfig.context_budget; None: as trained)
    sampling_steps: int = 1  # denoising steps per latent frame; 1: the simulator's default, what the shipped models serve
    guidance_scale: float = 1.0  # classifier-free guidance on actions (> 1 follows actions harder, two DiT passes per step)
    sampler: str = "euler"  # euler | heun (SimConfig.sampler)
    shift: float = 1.0  # timestep shift of the sampler's grid (SimConfig.shift; > 1: more steps at high noise)
    context_noise: float = 0.0  # noise level of generated frames as context (SimConfig.context_noise)
    reencode: bool | None = None  # generated frames re-encoded as context (SimConfig.reencode; None: as the export is served)
    dtype: str = "auto"  # simulator arithmetic (SimConfig.dtype): auto (bf16 where the CPU multiplies it natively) | float32 | bfloat16
    device: str = "cpu"
    num_envs: int = 8  # simulated episodes per batch
    probes: bool = True  # probe-world probes (only when world=probe)
    probe_seeds: int = 6  # scenario seeds per probe family
    probe_steps: int = 32  # latent steps per probe episode
    idm: bool = True  # action following with an inverse-dynamics model (Discrete actions only)
    idm_data: str | None = None  # real episode store to train it on; None: roll `idm_episodes` random episodes
    idm_episodes: int = 24
    idm_train_steps: int = 300
    consistency: bool = True  # look away and back
    loop_lengths: list[int] = field(default_factory=lambda: [2, 4, 8])  # latent steps away (and as many back)
    minedojo: bool = True  # real vs simulated against MineDojo when it can start (reported as skipped otherwise)
    video_store: str | None = None  # imported real video (e.g. Minecraft): continuation from the first frames
    videos: bool = True  # mp4 strips real | simulated
    progress: bool = True

    def __post_init__(self) -> None:
        check_seed(self.first_seed, "first_seed")
        check_dtype(self.dtype)
        if not self.horizons or any(not isinstance(h, int) or h < 1 for h in self.horizons):
            raise ValueError(f"horizons must be a non-empty list of latent steps >= 1, got {list(self.horizons)}")
        if any(not isinstance(n, int) or n < 1 for n in self.loop_lengths):
            raise ValueError(f"loop_lengths must be latent steps >= 1 (away, and as many back), got {list(self.loop_lengths)}")
