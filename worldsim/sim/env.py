"""`WorldModelEnv`: the learned simulator as a `gymnasium.Env`.

    env = gymnasium.make("worldsim/WorldModel-v0", checkpoint=EXPORT_DIR, dataset=STORE)
    obs, info = env.reset(seed=0)               # context from a dataset episode
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    info["frames"]                              # uint8 (k, H, W, 3): the k frames of this step, obs is the last

One step is one latent frame: k real frames with the action held. The reward is the DiT's learned
reward head, termination its termination head (sigmoid > 0.5), truncation comes at
``max_episode_steps`` (by default the limit of the real world it imitates, in its steps of k frames);
a world that never pays a reward (the probe world) gets exactly 0. ``frameskip`` repeats the action
over that many steps (rewards add up, ``info["frames"]`` holds them all). Reset options: ``{"dataset": STORE}``, ``{"frames": uint8 (T, H, W, 3) or
one image (H, W, 3), "actions": the T - 1 actions between them (optional)}`` or ``{"real_env":
"crafter" | an env}``; without options the store or world given at construction is used. Every
random choice (episode, start, sampling noise) comes from ``self.np_random``, so the same seed and
actions give the same frames.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from worldsim.models.latents import num_real_frames
from worldsim.sim.config import SimConfig
from worldsim.sim.simulator import Simulator, Track
from worldsim.sim.sources import ContextSource
from worldsim.spaces import check_action, pack_action


def sim_config(config: SimConfig | None, overrides: dict[str, Any]) -> SimConfig:
    """`config` (default `SimConfig()`) with keyword overrides; an unknown key is a TypeError naming it."""
    known = {f.name for f in dataclasses.fields(SimConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown simulator options {unknown}; known: {sorted(known)}")
    return dataclasses.replace(config or SimConfig(), **overrides)


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A CPU torch generator seeded from the env's numpy generator (noise is then the same on CPU and GPU)."""
    return torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))


class WorldModelEnv(gym.Env):
    """A learned world model driven like the real world it was trained on; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, checkpoint: str | os.PathLike, dataset: str | None = None, real_env: str | gym.Env | None = None,
                 render_mode: str | None = None, config: SimConfig | None = None, **overrides: Any) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = sim_config(config, overrides)
        self.sim = Simulator(checkpoint, self.config)
        self.sim.require_actions(checkpoint)
        h, w = self.sim.frame_size
        self.observation_space = spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.action_space = self.sim.action_space
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.sim.render_fps}  # one frame per step of k real frames
        self.source = ContextSource(self.sim.frame_size, self.action_space,
                                    num_real_frames(self.config.context_frames, self.sim.k), dataset, real_env)
        self._track: Track | None = None
        self._obs: np.ndarray | None = None
        self._steps = 0
        self._done = False
        self._closed = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if self._closed:
            raise RuntimeError("WorldModelEnv.reset called after close(): this env is closed; make a new one")
        super().reset(seed=seed)
        context = self.source.get(options, self.np_random)
        self._track = self.sim.start(context.frames, context.actions, context.has_action)
        self._obs = np.array(context.frames[-1], dtype=np.uint8)
        self._steps, self._done = 0, False
        return self._obs.copy(), {**context.info, "context_frames": self._track.length}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._closed:
            raise RuntimeError("WorldModelEnv.step called after close()")
        if self._track is None:
            raise RuntimeError("WorldModelEnv.step called before reset()")
        if self._done:
            raise RuntimeError("this episode has ended (terminated or truncated): call reset() before stepping again")
        check_action(self.action_space, action)  # ActionError naming the space
        packed = pack_action(self.action_space, action)[None]  # (1, D)
        reward, frames, terminated, truncated = 0.0, [], False, False
        for _ in range(self.config.frameskip):  # the action repeated, rewards added up (ALE's frameskip)
            out = self.sim.step([self._track], packed, [torch_generator(self.np_random)])
            self._steps += 1
            reward += float(out.reward[0])
            frames.append(out.frames[0])
            terminated = bool(out.terminated[0])
            truncated = self._steps >= self.sim.max_episode_steps and not terminated
            if terminated or truncated:
                break
        self._done = terminated or truncated
        self._obs = frames[-1][-1]
        return self._obs.copy(), reward, terminated, truncated, {"frames": np.concatenate(frames)}

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array" and self._obs is not None:
            return self._obs.copy()
        return None

    def close(self) -> None:
        self._closed = True
        self.source.close()
        self.sim.close()
