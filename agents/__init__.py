"""Things that act: in real worlds and in the learned simulator."""

from __future__ import annotations

import gymnasium

from worldsim.agents.base import Agent
from worldsim.agents.explore import ExploreAgent
from worldsim.agents.probe import NoopAgent, PushAgent
from worldsim.agents.random import RandomAgent
from worldsim.agents.replay import ReplayAgent


def _actor_critic(action_space: gymnasium.Space, num_envs: int, seed: int | None = None, **kwargs) -> Agent:
    """The "actor_critic" policy: saved weights, ``weights=PATH`` (imported on use: it needs torch)."""
    from worldsim.agents.actor_critic import make_actor_critic_agent

    return make_actor_critic_agent(action_space, num_envs, seed=seed, **kwargs)


POLICIES = {
    "random": RandomAgent,
    "explore": ExploreAgent,  # long walks, bursts of "do", some crafting and random play (Crafter); action repeats elsewhere
    "noop": NoopAgent,  # probe world: the pusher stays put
    "push": PushAgent,  # probe world: push the nearest ball to the right
    "actor_critic": _actor_critic,  # trained weights: make_policy(..., weights="agent.safetensors")
}


def make_policy(name: str, action_space: gymnasium.Space, num_envs: int, seed: int | None = None,
                **kwargs) -> Agent:
    """An agent by name (see POLICIES) for `num_envs` worlds with `action_space`.

    `kwargs` reach the policy's constructor (e.g. ``weights=PATH`` for "actor_critic").
    """
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known policies: {', '.join(sorted(POLICIES))}")
    return POLICIES[name](action_space, num_envs, seed=seed, **kwargs)


__all__ = ["Agent", "ExploreAgent", "NoopAgent", "POLICIES", "PushAgent", "RandomAgent", "ReplayAgent", "make_policy"]
