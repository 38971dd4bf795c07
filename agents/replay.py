"""Replaying recorded action sequences, one per world."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector.utils import concatenate, create_empty_array


class ReplayAgent:
    """Plays back a fixed action sequence in each of `num_envs` worlds, ignoring observations.

    `sequences[i][t]` is the single (unbatched) action world `i` takes at its step `t`: e.g. an
    int64 array (T,) for a Discrete space or a list of dicts for a Dict space. `reset(mask)`
    rewinds the masked worlds to step 0; `load(i, actions)` gives world `i` a new sequence (and
    rewinds it). Acting past the end of a sequence is an error, so a replay never silently
    turns into something else.
    """

    def __init__(self, action_space: gymnasium.Space, sequences: Sequence[Sequence[Any]]):
        if len(sequences) == 0:
            raise ValueError("ReplayAgent needs at least one action sequence")
        self.action_space = action_space
        self.num_envs = len(sequences)
        self._sequences: list[Sequence[Any]] = [[] for _ in range(self.num_envs)]
        self._t = np.zeros(self.num_envs, dtype=np.int64)
        for i, seq in enumerate(sequences):
            self.load(i, seq)

    def load(self, i: int, actions: Sequence[Any]) -> None:
        """Give world `i` the sequence `actions` (each checked against the space) and rewind it."""
        for t, a in enumerate(actions):
            if not self.action_space.contains(_as_single(self.action_space, a)):
                raise ValueError(f"ReplayAgent: action {t} of world {i}, {a!r}, is not in {self.action_space}")
        self._sequences[i] = actions
        self._t[i] = 0

    @property
    def steps_taken(self) -> np.ndarray:
        """int64 (num_envs,): how many actions each world has played since its last reset."""
        return self._t.copy()

    def act(self, obs: np.ndarray) -> Any:
        if len(obs) != self.num_envs:
            raise ValueError(f"ReplayAgent acts for {self.num_envs} worlds, got {len(obs)} observations")
        for i, t in enumerate(self._t):
            if t >= len(self._sequences[i]):
                raise ValueError(f"ReplayAgent: world {i} has played all {len(self._sequences[i])} recorded actions")
        items = [_as_single(self.action_space, self._sequences[i][t]) for i, t in enumerate(self._t)]
        self._t += 1
        out = create_empty_array(self.action_space, self.num_envs)
        return concatenate(self.action_space, items, out)

    def reset(self, mask: np.ndarray, seeds: list[int | None] | None = None) -> None:
        self._t[np.asarray(mask, dtype=bool)] = 0


def _as_single(space: gymnasium.Space, a: Any) -> Any:
    """A stored action in the form `space.contains` expects (numpy ints for Discrete)."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return np.int64(a)
    if isinstance(space, (gymnasium.spaces.Box, gymnasium.spaces.MultiDiscrete, gymnasium.spaces.MultiBinary)):
        return np.asarray(a, dtype=space.dtype)
    return a
