"""Paired rollouts: the real world and the simulator from the same context with the same actions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from worldsim.eval.episodes import RealEpisode, replay_real, roll_real


@dataclass
class Paired:
    """N paired rollouts after a shared context of `context` real frames."""

    context: int  # real frames given to the simulator (the last is the "before" frame)
    k: int  # real frames per latent step
    episodes: list[RealEpisode]  # the real episodes (context + rollout)
    real: np.ndarray  # uint8 (N, m k, H, W, 3): real frames after the context
    sim: np.ndarray | None  # same shape, from the simulator; None when no simulator was given
    actions: list[list[Any]]  # N lists of the m actions (one per latent step) after the context
    seeds: list[int]  # the seeds rolled, one per episode (see `replace_short`)


def paired_rollouts(env_name: str, seeds: list[int], steps: int, *, runner: Any = None, k: int = 1,
                    context: int = 1, size: int = 64, policy: str = "random", actions: list[int] | None = None,
                    reset_options: dict[str, Any] | None = None, replace_short: bool = False) -> Paired:
    """Roll the real world `env_name` per seed, then the simulator (`SimRunner` or None) alike.

    Actions come from `policy` (asked once per latent step, held for k frames) or, when
    `actions` is given, that fixed sequence of m = `steps` latent-step actions after the context
    (the context itself is then rolled with the policy).

    Args:
        steps: latent steps after the context (m).
        context: real frames of context; must be 1 + (n - 1) k.
        replace_short: a seed whose real episode ends before the comparison does (a Crafter player dying early) is
            replaced by the next seed after the largest one given, instead of raising; `Paired.seeds` names the
            seeds rolled.
    """
    from worldsim import envs
    from worldsim.agents import make_policy

    if runner is not None:
        k, context = runner.k, runner.context_rows
    if (context - 1) % k:
        raise ValueError(f"context must be 1 + (n - 1) k frames for k={k}, got {context}")
    env = envs.make_real_env(env_name, size=size)
    episodes, used, queue = [], [], list(seeds)
    spare = max(seeds, default=-1) + 1
    try:
        while queue:
            seed = queue.pop(0)
            lead = context - 1
            if actions is None:
                agent = make_policy(policy, env.action_space, 1, seed=seed)
                ep = roll_real(env, agent, lead + steps * k, seed=seed, options=reset_options, hold=k)
            else:
                agent = make_policy(policy, env.action_space, 1, seed=seed)
                head = roll_real(env, agent, lead, seed=seed, options=reset_options, hold=k).actions if lead else []
                held = [a for a in actions[:steps] for _ in range(k)]
                ep = replay_real(env, list(head) + held, seed=seed, options=reset_options)
            if len(ep.frames) < context + steps * k:
                if replace_short and spare - max(seeds) <= 4 * len(seeds):
                    queue.append(spare)
                    spare += 1
                    continue
                raise ValueError(f"{env_name} episode of seed {seed} ended after {len(ep.frames) - 1} steps; "
                                 f"the comparison needs {context - 1 + steps * k}"
                                 + (" (and so did too many of the seeds tried in place of the short ones)"
                                    if replace_short else ""))
            episodes.append(ep)
            used.append(seed)
    finally:
        env.close()
    real = np.stack([ep.frames[context:context + steps * k] for ep in episodes])
    step_actions = [[ep.actions[context - 1 + j * k] for j in range(steps)] for ep in episodes]
    sim = None
    if runner is not None:
        sim = runner.rollout([ep.frames[:context] for ep in episodes], [ep.actions[:context - 1] for ep in episodes],
                             step_actions)
    return Paired(context, k, episodes, real, sim, step_actions, used)


def replay_paired(env_name: str, paired: Paired, size: int, seeds: list[int]) -> np.ndarray:
    """The real world played again from the same seeds with the same actions: frames shaped like `paired.real`.

    For worlds that run in real time (Minetest) the two plays differ a little; their distance is
    the floor under which no simulator can be judged.
    """
    from worldsim import envs

    env = envs.make_real_env(env_name, size=size)
    try:
        again = [replay_real(env, list(ep.actions), seed=seed).frames for ep, seed in zip(paired.episodes, seeds)]
    finally:
        env.close()
    n = paired.real.shape[1]
    return np.stack([f[paired.context:paired.context + n] for f in again])
