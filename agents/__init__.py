"""Things that act: in real worlds and in the learned simulator."""

from __future__ import annotations

import gymnasium

from agents.base import Agent
from agents.probe import NoopAgent, PushAgent
from agents.random import RandomAgent
from agents.replay import ReplayAgent

POLICIES = {
    "random": RandomAgent,
    "noop": NoopAgent,  # probe world: the pusher stays put
    "push": PushAgent,  # probe world: push the nearest ball to the right
}


def make_policy(name: str, action_space: gymnasium.Space, num_envs: int, seed: int | None = None) -> Agent:
    """An agent by name (see POLICIES) for `num_envs` worlds with `action_space`."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known policies: {', '.join(sorted(POLICIES))}")
    return POLICIES[name](action_space, num_envs, seed=seed)


__all__ = ["Agent", "NoopAgent", "POLICIES", "PushAgent", "RandomAgent", "ReplayAgent", "make_policy"]
