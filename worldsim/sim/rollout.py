"""`worldsim rollout`: drive the simulator with a policy, write an mp4, and real | simulated side by side.

With a real world available (named, or found from the export's training store), the simulator's
context is the real world's first observation after ``reset(seed)``, and both are stepped with the
same actions: each simulator step holds its action for k real steps. Otherwise the context comes
from a dataset episode and only the simulated video is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import MISSING

from worldsim.config import check_rate, check_seed
from worldsim.sim.config import SimConfig
from worldsim.video import side_by_side, write_mp4


@dataclass
class RolloutConfig:
    """`worldsim rollout checkpoint=EXPORT policy=random steps=N out=DIR`."""

    checkpoint: str = MISSING  # a DiT export folder (from `worldsim train`)
    policy: str = "random"  # a name from worldsim.agents.POLICIES
    steps: int = 32  # simulator steps (latent frames); k real frames each
    out: str = "runs/rollout"  # folder for sim.mp4 and side_by_side.mp4
    seed: int = 0  # seeds the simulator, the policy and the real world
    real_env: str | None = "auto"  # a real world name, "auto" (from the export's training store), or null: none
    dataset: str | None = None  # store for the context when there is no real world; default: the export's training store
    fps: float | None = None  # video frame rate; default: the export's
    video_store: str | None = None  # continue a clip of this store (e.g. imported footage) from its first frames
    episode: int = 0  # the clip of video_store
    sim: SimConfig = field(default_factory=SimConfig)

    def __post_init__(self) -> None:
        check_seed(self.seed)
        check_rate(self.fps)


@dataclass
class RolloutResult:
    sim_video: Path
    side_by_side_video: Path | None
    frames: int  # simulated frames written (context frame included)
    seconds: float  # wall time of the simulator steps
    real_env: str | None


def _training_store(meta: dict[str, Any]) -> str | None:
    data = (meta.get("train") or {}).get("data")
    return data if data and Path(data).exists() else None


def _real_env_name(cfg: RolloutConfig, meta: dict[str, Any]) -> str | None:
    if cfg.real_env != "auto":
        return cfg.real_env
    return recorded_world(meta)


def recorded_world(meta: dict[str, Any]) -> str | None:
    """Short name of the real world an export imitates: recorded in the export, else read from its training store."""
    from worldsim.envs import real_env_name

    env_id = (meta.get("world") or {}).get("env_id")
    if env_id is None:  # exports written before the world was recorded in them
        store = _training_store(meta)
        if store is None:
            return None
        from worldsim.data.store import EpisodeStore

        with EpisodeStore.open(store) as s:
            env_id = s.env_id
    return real_env_name(env_id)


def rollout(cfg: RolloutConfig) -> RolloutResult:
    from worldsim.agents import make_policy
    from worldsim.sim.env import WorldModelEnv
    from worldsim.export import read_export_config

    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    from worldsim.pretrained import resolve_checkpoint

    cfg.checkpoint = resolve_checkpoint(cfg.checkpoint)  # a shipped model may be named (probes, worldsim/Probes-v0)
    meta = read_export_config(cfg.checkpoint)
    if cfg.dataset is not None:  # named, it must be a store even where a real world gives the context
        from worldsim.data.store import EpisodeStore, StoreError

        try:
            EpisodeStore.open(cfg.dataset, mode="r").close()
        except StoreError as e:
            raise StoreError(f"dataset={cfg.dataset}: {e}") from None
    if cfg.video_store is not None:
        return _continue_clip(cfg, meta)
    real_name = _real_env_name(cfg, meta)
    env = WorldModelEnv(cfg.checkpoint, dataset=cfg.dataset or _training_store(meta), config=cfg.sim)
    policy = make_policy(cfg.policy, env.action_space, 1, seed=cfg.seed)
    fps = cfg.fps or float(meta.get("fps") or 15.0)
    real = real_frames = None
    if real_name is not None:
        from worldsim.envs import make_real_env

        real = make_real_env(real_name, size=env.sim.frame_size[0])
        obs, _ = real.reset(seed=cfg.seed)
        real_frames = [obs]
        obs, _ = env.reset(seed=cfg.seed, options={"frames": obs})
    else:
        obs, _ = env.reset(seed=cfg.seed)
    sim_frames, real_done = [obs], False
    start = time.perf_counter()
    for _ in range(cfg.steps):
        action = next(iter(policy.act(obs[None])))
        obs, _, terminated, truncated, info = env.step(action)
        sim_frames += list(info["frames"])
        if real is not None and not real_done:
            for _ in range(env.sim.k):
                r_obs, _, r_term, r_trunc, _ = real.step(action)
                real_frames.append(r_obs)
                if r_term or r_trunc:
                    real_done = True
                    break
        if terminated or truncated:
            break
    seconds = time.perf_counter() - start
    out = Path(cfg.out)
    sim_video = write_mp4(out / "sim.mp4", np.stack(sim_frames), fps)
    both = None
    if real is not None:
        both = write_mp4(out / "side_by_side.mp4", side_by_side(np.stack(real_frames), np.stack(sim_frames)), fps)
        real.close()
    env.close()
    return RolloutResult(sim_video, both, len(sim_frames), seconds, real_name)


def _continue_clip(cfg: RolloutConfig, meta: dict[str, Any]) -> RolloutResult:
    """A clip's first frames as context, the rest simulated with no actions (the null action): footage continued.

    sim.mp4 holds the context and the simulated frames; side_by_side.mp4 the clip beside them.
    """
    from worldsim.data.store import EpisodeStore
    from worldsim.models.latents import num_real_frames
    from worldsim.sim.simulator import Simulator

    sim = Simulator(cfg.checkpoint, cfg.sim)
    with EpisodeStore.open(cfg.video_store) as store:
        if not 0 <= cfg.episode < store.num_episodes:
            raise ValueError(f"episode={cfg.episode}: {cfg.video_store} holds episodes 0-{store.num_episodes - 1}")
        clip = store.episode(cfg.episode)["obs"]
    context = num_real_frames(cfg.sim.context_frames, sim.k)
    if len(clip) < context:
        raise ValueError(f"clip {cfg.episode} of {cfg.video_store} has {len(clip)} frames; the context needs {context}")
    clip = sim.check_frames(clip, f"the frames of {cfg.video_store}")
    start = time.perf_counter()
    frames = sim.continue_free([clip[:context]], cfg.steps, seed=cfg.seed)[0]
    seconds = time.perf_counter() - start
    simulated = np.concatenate([clip[:context], frames])
    fps = cfg.fps or float(meta.get("fps") or 15.0)
    out = Path(cfg.out)
    sim_video = write_mp4(out / "sim.mp4", simulated, fps)
    both = write_mp4(out / "side_by_side.mp4", side_by_side(clip, simulated), fps)  # as long as the shorter
    sim.close()
    return RolloutResult(sim_video, both, len(simulated), seconds, None)
