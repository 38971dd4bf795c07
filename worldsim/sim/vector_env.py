"""`WorldModelVectorEnv`: N simulated episodes stepped together, one DiT forward per denoising step.

    envs = gymnasium.make_vec("worldsim/WorldModel-v0", num_envs=8, vectorization_mode="vector_entry_point",
                              checkpoint=EXPORT_DIR, dataset=STORE)

Sub-env i is exactly a `WorldModelEnv` reset with seed ``seed + i``: it has its own numpy generator
for its episode choices and sampling noise, so results match the sub-envs run one by one (to float
rounding of the batched forward). Autoreset is NEXT_STEP (declared in ``metadata``): the step after
a sub-env terminates or truncates resets it (its action is ignored, reward 0) with the options of
its last explicit reset (or the default context source). ``info["frames"]`` (N, k, H, W, 3) with mask ``info["_frames"]``.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, iterate

from worldsim.models.latents import num_real_frames
from worldsim.sim.config import SimConfig
from worldsim.sim.env import sim_config, torch_generator
from worldsim.sim.simulator import Simulator, Track
from worldsim.sim.sources import ContextSource
from worldsim.spaces import check_action, pack_action


class WorldModelVectorEnv(VectorEnv):
    """`num_envs` learned-simulator episodes batched into one model call per denoising step."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, num_envs: int, checkpoint: str | os.PathLike, dataset: str | None = None,
                 real_env: str | gym.Env | None = None, render_mode: str | None = None,
                 config: SimConfig | None = None, **overrides: Any) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self.config = sim_config(config, overrides)
        self.sim = Simulator(checkpoint, self.config)
        self.sim.require_actions(checkpoint)
        h, w = self.sim.frame_size
        self.single_observation_space = spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.single_action_space = self.sim.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.sim.render_fps}
        self.source = ContextSource(self.sim.frame_size, self.single_action_space,
                                    num_real_frames(self.config.context_frames, self.sim.k), dataset, real_env)
        self._rngs = [seeding.np_random(None)[0] for _ in range(num_envs)]
        self._tracks: list[Track | None] = [None] * num_envs
        self._obs = np.zeros(self.observation_space.shape, dtype=np.uint8)
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._options: list[dict[str, Any]] = [{} for _ in range(num_envs)]  # what an autoreset reuses

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if self.closed:
            raise RuntimeError("WorldModelVectorEnv.reset called after close(): this env is closed; make a new one")
        super().reset(seed=seed if isinstance(seed, int) else None)
        if isinstance(seed, int):
            seeds: list[int | None] = [seed + i for i in range(self.num_envs)]
        elif seed is None:
            seeds = [None] * self.num_envs
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} sub-envs")
        options = dict(options or {})
        mask = np.asarray(options.pop("reset_mask", np.ones(self.num_envs, dtype=bool)), dtype=bool)
        if mask.shape != (self.num_envs,):
            raise ValueError(f"reset_mask must be bool ({self.num_envs},), got shape {mask.shape}")
        for i in np.flatnonzero(mask):
            if seeds[i] is not None:
                self._rngs[i] = seeding.np_random(seeds[i])[0]
            self._options[i] = options
            self._reset_one(i, options)
        return self._obs.copy(), {}

    def _reset_one(self, i: int, options: dict[str, Any] | None) -> None:
        context = self.source.get(options, self._rngs[i])
        self._tracks[i] = self.sim.start(context.frames, context.actions, context.has_action)
        self._obs[i] = context.frames[-1]
        self._steps[i] = 0
        self._autoreset[i] = False

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self.closed:
            raise RuntimeError("WorldModelVectorEnv.step called after close(): this env is closed; make a new one")
        if any(t is None for t in self._tracks):
            raise RuntimeError("WorldModelVectorEnv.step called before reset()")
        n = self.num_envs
        reward = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        skip = self.config.frameskip
        frames = np.zeros((n, skip * self.sim.k, *self.single_observation_space.shape), dtype=np.uint8)
        stepped = ~self._autoreset
        per_env = list(iterate(self.action_space, actions))
        if len(per_env) != n:
            raise ValueError(f"got actions for {len(per_env)} sub-envs, expected {n} (a batch from {self.action_space})")
        for i in np.flatnonzero(self._autoreset):
            self._reset_one(i, self._options[i])
        live = np.flatnonzero(stepped)
        if live.size:
            for i in live:
                check_action(self.single_action_space, per_env[i])
            packed = {i: pack_action(self.single_action_space, per_env[i]) for i in live}  # (D,) each
            for r in range(skip):  # the action repeated (frameskip); a sub-env that ends stops stepping
                live = live[~(terminated[live] | truncated[live])]
                if not live.size:
                    break
                out = self.sim.step([self._tracks[i] for i in live], np.stack([packed[i] for i in live]),
                                    [torch_generator(self._rngs[i]) for i in live])
                self._steps[live] += 1
                k = self.sim.k
                frames[live, r * k:(r + 1) * k] = out.frames
                frames[live, (r + 1) * k:] = out.frames[:, -1:]  # an episode that ends early repeats its last frame
                self._obs[live] = out.frames[:, -1]
                reward[live] += out.reward
                terminated[live] = out.terminated
                truncated[live] = (self._steps[live] >= self.sim.max_episode_steps) & ~out.terminated
        self._autoreset = terminated | truncated
        return self._obs.copy(), reward, terminated, truncated, {"frames": frames, "_frames": stepped}

    def render(self) -> np.ndarray | None:
        return self._obs.copy() if self.render_mode == "rgb_array" else None

    def close_extras(self, **kwargs: Any) -> None:
        self.source.close()
        self.sim.close()
