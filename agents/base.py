"""The agent protocol: act on a batch of observations, reset per sub-environment."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Agent(Protocol):
    """Something that acts in `num_envs` worlds at once.

    `act` takes a batch of observations, uint8 (N, H, W, 3), and returns one action per world in
    the batched form Gymnasium's vector envs expect (e.g. int64 (N,) for a Discrete space).
    `reset(mask, seeds)` tells the agent which worlds started a new episode, bool (N,), and
    optionally the seed of each new episode, so a stochastic agent can make an episode depend
    on its seed alone.
    """

    def act(self, obs: np.ndarray) -> Any: ...

    def reset(self, mask: np.ndarray, seeds: list[int | None] | None = None) -> None: ...
