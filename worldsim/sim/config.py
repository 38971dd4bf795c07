"""Typed configuration of the learned simulator (`WorldModelEnv`, `WorldModelVectorEnv`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from worldsim.context import ContextScheme

SAMPLERS = ("euler", "heun")
CACHE_MODES = ("incremental", "recompute")
DTYPES = ("auto", "float32", "bfloat16")
DEFAULT_BUDGET = 16  # context budget of exports that do not record their training window


@dataclass
class SimConfig:
    """How the simulator picks context, samples and runs."""

    context: str = "autoregressive"  # context scheme: autoregressive | long-range | hierarchical
    # Latent frames attended to per step (the token budget is this x tokens per frame). None: the export's
    # serving default where evaluation chose one (`worldsim.export.set_serving`; Crafter-v0: 4, as faithful as 8
    # and 13% faster), else the context the model trained on, its training window in latent frames minus the
    # one it denoises (8 for the shipped models). Past it the model sees contexts it never trained on:
    # Crafter-v0 at 16 latent steps scores 18.2 dB with a budget of 16 against 19.5 with 8 (1 sampling step,
    # 16 seeds), and each step costs more.
    context_budget: int | None = None
    recent: int | None = None  # long-range: newest frames kept (None: budget // 2)
    level_size: int = 4  # hierarchical: frames per level
    context_frames: int = 4  # latent frames of context taken at reset (1 + (n - 1) k real frames)
    sampler: str = "euler"  # euler (DDIM, one evaluation per step) | heun (2 steps - 1 evaluations)
    # Denoising steps per latent frame. 1 is the default: on the shipped models (docs/bench/sampling_steps_eval.json)
    # it scores as well as 4 or better (probe world 20.3 / 16.0 dB at 1 / 16 latent steps against 19.9 / 15.7,
    # IDM 0.60 against 0.55; Crafter 27.9 / 18.4 against 28.0 / 18.0) at half the cost of a step.
    sampling_steps: int = 1
    guidance_scale: float = 1.0  # classifier-free guidance on actions; 1 = plain conditional (cheapest)
    shift: float = 1.0  # timestep shift of the sampler's grid (> 1: more steps at high noise)
    # Noise level at which generated frames enter the context (0: clean). A model trained with noise on its
    # context (`objective.context_noise_max`) can be told its own frames are that noisy (diffusion forcing's
    # stabilisation, Oasis's dynamic noising); the real context frames of a reset stay clean.
    context_noise: float = 0.0
    # Generated frames enter the context as the encoder sees them drawn: each step's new frames, decoded, are
    # encoded again (streaming, one encoder pass over k frames) and that latent is what later steps attend to,
    # not the sampled one. The context stays on the latents the DiT trained on: a half-faded ball comes back as
    # the encoder reads its pixels. None: as the export is served (`serving` in its config.json; Probes-v0: true), else false.
    reencode: bool | None = None
    cache: str = "incremental"  # incremental: keys/values computed once per frame | recompute: re-encode the selected context every step (exact, slower)
    max_episode_steps: int | None = None  # truncation, in env steps (latent frames); None: the imitated world's limit
    frameskip: int = 1  # env steps per step() with the action repeated (as ALE's frameskip): rewards add up
    device: str = "cpu"  # torch device of the models
    dtype: str = "auto"  # auto: bfloat16 on CUDA and on CPUs that multiply bf16 natively (AMX), else float32 | float32 | bfloat16
    compile: bool = False  # torch.compile the DiT and the decoder (about a minute at the first steps); eager if it fails
    # Reward and termination from a frame model (`worldsim.models.frame_heads`, a .safetensors file) instead
    # of the DiT's heads: for sparse rewards the DiT's heads learn a constant (see that module)
    reward_model: str | None = None
    # Show a palette world's frames through the export's pixel refiner when it has one (`refiner.safetensors`,
    # `worldsim.models.frame_refiner`); false: the decoder's frames as they are
    refine: bool = True

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; known: {', '.join(SAMPLERS)}")
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {self.cache!r}")
        check_dtype(self.dtype)
        if self.sampling_steps < 1 or self.context_frames < 1 or self.frameskip < 1 or (
                self.max_episode_steps is not None and self.max_episode_steps < 1):
            raise ValueError("sampling_steps, context_frames, frameskip and max_episode_steps must be >= 1")
        if not 0.0 <= self.context_noise < 1.0:
            raise ValueError(f"context_noise must lie in [0, 1), got {self.context_noise}")
        if not math.isfinite(self.guidance_scale) or not math.isfinite(self.shift) or self.shift <= 0:
            raise ValueError(f"guidance_scale must be finite and shift finite and > 0, got {self.guidance_scale}, {self.shift}")
        self.scheme(DEFAULT_BUDGET)  # validates the scheme's parameters

    def scheme(self, trained_budget: int) -> ContextScheme:
        """The context scheme; `trained_budget` (the model's trained context) stands in for context_budget None."""
        budget = trained_budget if self.context_budget is None else self.context_budget
        return ContextScheme(self.context, budget, self.recent, self.level_size)


def check_dtype(dtype: str) -> None:
    """Refuse a simulator dtype outside DTYPES, in one line (SimConfig, and `worldsim eval`, which passes it on)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
