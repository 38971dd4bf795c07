"""Typed configs for the command-line entry points (the CLI registers them in Hydra's ConfigStore).

The YAML files under `conf/` fill these dataclasses; because the schema is a structured config, a
misspelt or unknown key fails at start-up with a message naming it. Library code receives the
dataclass instances (via `OmegaConf.to_object`), never a DictConfig.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


def check_seed(value: int, name: str = "seed") -> None:
    """Seeds are non-negative integers (numpy refuses negative ones deep inside a run)."""
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def check_rate(value: float | None, name: str = "fps") -> None:
    """Frame rates are finite and > 0 (None: the default of the command)."""
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0 frames per second (or null for the default), got {value!r}")


def check_out(value: str, name: str = "out") -> None:
    """An output path given as `out=` with nothing after it would write into the current folder."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is empty: give the path of the episode store, e.g. {name}=data/probe.zarr")


def check_port(value: int, name: str = "port", allow_zero: bool = True) -> None:
    """TCP ports are 1-65535 (0: any free port, where allowed)."""
    if not isinstance(value, int) or not (0 if allow_zero else 1) <= value <= 65535:
        raise ValueError(f"{name} must be a TCP port in {0 if allow_zero else 1}-65535, got {value!r}")


@dataclass
class EnvConfig:
    """A real world from `envs/`."""

    name: str = "crafter"  # short name: crafter | probe | minedojo (see envs.REAL_ENVS)
    size: int = 64  # observation height and width in pixels
    max_episode_steps: int | None = None  # None: the world's own default
    kwargs: dict[str, Any] = field(default_factory=dict)  # world-specific constructor arguments

    def __post_init__(self) -> None:
        if self.max_episode_steps is not None and (not isinstance(self.max_episode_steps, int) or self.max_episode_steps < 1):
            raise ValueError(f"env.max_episode_steps must be >= 1 (or null: the world's own limit), got {self.max_episode_steps!r}")


@dataclass
class CollectConfig:
    """`worldsim collect`: roll a policy in a real world and record episodes."""

    env: EnvConfig = MISSING  # chosen with env=crafter|probe|minedojo
    out: str = MISSING  # episode store path; appended to if it exists
    episodes: int = 10  # episodes to add to the store
    policy: str = "random"  # a name from worldsim.agents.POLICIES
    policy_kwargs: dict[str, Any] = field(default_factory=dict)  # the policy's own arguments, e.g. {weights: agent.safetensors} for actor_critic
    num_envs: int = 2  # worlds stepped in parallel
    vector: str = "async"  # async (one process per world) | sync (all in this process)
    seed: int = 0  # episode j of the store is reset with seed + j, so a resumed run adds new worlds
    fps: float | None = None  # recorded frame rate; None: the world's render_fps
    progress: bool = True  # show a progress bar

    def __post_init__(self) -> None:
        check_seed(self.seed)
        check_out(self.out)
        check_rate(self.fps)


@dataclass
class ImportVideoConfig:
    """`worldsim import-video DIR`: mp4 files to action-free (or VPT-action) episodes."""

    src: str = MISSING  # folder of .mp4 files (searched recursively)
    out: str = MISSING  # episode store path; appended to if it exists
    size: int = 64  # frames are resized (centre-cropped to square first when square=true)
    square: bool = True  # centre-crop to a square before resizing
    fps: float | None = None  # resample to this frame rate; None keeps the first video's
    max_frames: int | None = None  # cut each video into episodes of at most this many frames
    actions: str = "auto"  # auto: import a VPT .jsonl beside a video if present | none: never
    on_error: str = "stop"  # a video (or its .jsonl) that cannot be read: stop (nothing of it written) | skip it and go on
    progress: bool = True

    def __post_init__(self) -> None:
        check_out(self.out)
        check_rate(self.fps)
