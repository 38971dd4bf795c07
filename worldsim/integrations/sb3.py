"""Stable-Baselines3 on the batched simulator: one DiT forward per denoising step for all sub-envs.

    from worldsim.integrations.sb3 import make_vec_env
    from stable_baselines3 import PPO

    venv = make_vec_env("worldsim/Probes-v0", num_envs=8)          # or any checkpoint=EXPORT, or a real world id
    PPO("CnnPolicy", venv).learn(10_000)

SB3 does not accept a `gymnasium.vector.VectorEnv` (it wants its own `VecEnv`, with auto-reset in the
same step and the final observation in ``infos[i]["terminal_observation"]``); `WorldModelVecEnv`
gives it exactly that over `WorldModelVectorEnv`. Real worlds (``worldsim-real/...``) go through
SB3's own `DummyVecEnv` (they step one by one anyway). Needs ``pip install 'worldsim[sb3]'``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.hardware import MissingDependencyError

try:
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
except ImportError as e:  # pragma: no cover - depends on the install
    raise MissingDependencyError("worldsim.integrations.sb3 needs Stable-Baselines3: pip install 'worldsim[sb3]'") from e


class WorldModelVecEnv(VecEnv):
    """An SB3 `VecEnv` over a `WorldModelVectorEnv` (SB3's auto-reset and terminal-observation semantics)."""

    def __init__(self, venv: gym.vector.VectorEnv) -> None:
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._seeds: list[int | None] = [None] * venv.num_envs
        self._options: dict[str, Any] = {}
        self.render_mode = getattr(venv, "render_mode", None)

    def reset(self) -> np.ndarray:
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        obs, _ = self.venv.reset(seed=seeds, options=self._options or None)
        self._seeds = [None] * self.num_envs
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        done = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in range(self.num_envs):
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        if done.any():  # SB3 resets in the same step and keeps the final observation aside
            for i in np.flatnonzero(done):
                infos[i]["terminal_observation"] = obs[i].copy()
            reset_obs, _ = self.venv.reset(options={**self._options, "reset_mask": done})
            obs = np.where(done[:, None, None, None], reset_obs, obs)
        return obs, reward.astype(np.float32), done, infos

    def close(self) -> None:
        self.venv.close()

    def seed(self, seed: int | None = None) -> list[int | None]:
        self._seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        return self._seeds

    def get_images(self) -> list[np.ndarray]:
        obs = self.venv.render()
        return [] if obs is None else list(obs)

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.venv, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return [getattr(self.venv, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


def make_vec_env(env_id: str, num_envs: int = 1, **kwargs: Any) -> VecEnv:
    """An SB3 `VecEnv` of `num_envs` copies of `env_id`: batched for the simulators (``worldsim/...``), SB3's
    `DummyVecEnv` for real worlds; kwargs go to the env (for example ``checkpoint=`` for
    ``worldsim/WorldModel-v0``, ``sampling_steps=``, ``real_env=``)."""
    import worldsim  # noqa: F401  (registers the ids)

    spec = gym.spec(env_id)
    if spec.vector_entry_point is not None:
        return WorldModelVecEnv(gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs))
    return DummyVecEnv([lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)])
