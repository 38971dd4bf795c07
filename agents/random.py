"""The uniformly random agent."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector.utils import concatenate, create_empty_array


class RandomAgent:
    """Samples every action uniformly from the action space.

    Each world has its own generator. `reset(mask, seeds)` reseeds the worlds that start a new
    episode, so an episode's actions depend only on its seed, not on which other worlds ran
    beside it or in what order episodes finished.
    """

    def __init__(self, action_space: gymnasium.Space, num_envs: int, seed: int | None = None):
        self.action_space = action_space
        self.num_envs = num_envs
        self._spaces = [copy.deepcopy(action_space) for _ in range(num_envs)]
        for i, space in enumerate(self._spaces):
            space.seed(None if seed is None else seed + i)

    def act(self, obs: np.ndarray) -> Any:
        if len(obs) != self.num_envs:
            raise ValueError(f"RandomAgent acts for {self.num_envs} worlds, got {len(obs)} observations")
        out = create_empty_array(self.action_space, self.num_envs)
        return concatenate(self.action_space, [s.sample() for s in self._spaces], out)

    def reset(self, mask: np.ndarray, seeds: list[int | None] | None = None) -> None:
        if seeds is None:
            return
        for i in np.flatnonzero(mask):
            self._spaces[i].seed(seeds[i])
