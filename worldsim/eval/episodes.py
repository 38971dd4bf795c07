"""Rolling real worlds for evaluation: frames, actions and ground truth of one episode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from worldsim.agents.base import Agent


@dataclass
class RealEpisode:
    """One real episode: T steps, T + 1 observations (row 0 is the reset frame)."""

    frames: np.ndarray  # uint8 (T + 1, H, W, 3)
    actions: list[Any]  # T single actions, actions[t] led from frames[t] to frames[t + 1]
    state: dict[str, np.ndarray]  # ground truth stacked over time: {key: (T + 1, ...)}; {} if none
    reward: np.ndarray  # float32 (T,)
    info: dict[str, Any]  # the reset info (e.g. probe family and scenario seed)


def roll_real(env: gymnasium.Env, agent: Agent, steps: int, seed: int | None = None,
              options: dict[str, Any] | None = None, hold: int = 1) -> RealEpisode:
    """Reset `env` with `seed`/`options` and let `agent` (a one-world agent) act for up to `steps` steps.

    The agent is asked every `hold` steps and its action held in between (a simulator with k real
    frames per latent step holds each action for k frames). Stops early when the episode
    terminates or is truncated.
    """
    if hold < 1:
        raise ValueError(f"hold must be >= 1, got {hold}")
    obs, info = env.reset(seed=seed, options=options)
    agent.reset(np.ones(1, bool), [seed])
    frames, actions, rewards, states = [obs], [], [], [info.get("state", {})]
    reset_info = {k: v for k, v in info.items() if k != "state"}
    action: Any = None
    for t in range(steps):
        if t % hold == 0:
            action = _unbatch(agent.act(obs[None]))
        obs, reward, terminated, truncated, info = env.step(action)
        frames.append(obs)
        actions.append(action)
        rewards.append(reward)
        states.append(info.get("state", {}))
        if terminated or truncated:
            break
    state = {k: np.stack([s[k] for s in states]) for k in states[0]} if states[0] else {}
    return RealEpisode(np.stack(frames), actions, state, np.asarray(rewards, np.float32), reset_info)


def replay_real(env: gymnasium.Env, actions: list[Any], seed: int | None = None,
                options: dict[str, Any] | None = None) -> RealEpisode:
    """Reset `env` and play `actions` in order (the same world and actions give the same episode)."""
    from worldsim.agents.replay import ReplayAgent

    return roll_real(env, ReplayAgent(env.action_space, [actions]), len(actions), seed, options)


def _unbatch(batched: Any) -> Any:
    if isinstance(batched, dict):
        return {k: _unbatch(v) for k, v in batched.items()}
    a = batched[0]
    return int(a) if np.ndim(a) == 0 and np.issubdtype(np.asarray(a).dtype, np.integer) else a

