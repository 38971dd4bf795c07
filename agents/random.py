"""The uniformly random agent."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector.utils import batch_space


class RandomAgent:
    """Samples every action uniformly from the action space, from its own seeded generator."""

    def __init__(self, action_space: gymnasium.Space, num_envs: int, seed: int | None = None):
        self.action_space = action_space
        self.num_envs = num_envs
        self._batched = batch_space(action_space, num_envs)
        self._batched.seed(seed)

    def act(self, obs: np.ndarray) -> Any:
        if len(obs) != self.num_envs:
            raise ValueError(f"RandomAgent acts for {self.num_envs} worlds, got {len(obs)} observations")
        return self._batched.sample()

    def reset(self, mask: np.ndarray) -> None:
        pass
