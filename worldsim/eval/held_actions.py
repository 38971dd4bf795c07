"""Imagined against real returns of held actions: the heads' bias as an agent in imagination meets it.

`worldsim.eval.calibration` reads the reward and termination heads teacher-forced on real frames. In
imagination they read generated frames, whose errors add up over an imagined episode, so a drift, or
one action whose imagined return differs from its real one, is what an agent trained there learns
(the Crafter-v0 heads, right on real frames, pay about -0.01 a step in imagination and less still
after `sleep`, so agents trained there stop sleeping). For each action held for `horizon` decisions,
and for a uniformly random policy:

- imagined: `num_envs` imagined episodes, each started from real context (as an agent trained in
  imagination starts them), scored with the simulator's reward and termination;
- real: `episodes` real episodes, each first played by the uniformly random policy for a random
  number of decisions in `warmup` (so the script starts from states like those random play
  records), then the script; its return counts the script's decisions only, and it terminated if
  the episode ended during them.

Both make one decision per simulator step (k real frames, the action held), so the returns compare
directly. The start states differ (the store's context against the live world after random play),
so small differences mean little; a sign flip or a gap of many times the interval is a bias.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.eval.compare import mean_ci95

RANDOM = -1  # the script that samples a uniform action each decision


def imagined_returns(envs: Any, action: int, horizon: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(returns, terminated) float (N,) of one imagined episode per sub-env of `envs` (a vector env over
    the simulator) with `action` held (RANDOM: uniform) for at most `horizon` steps."""
    rng = np.random.default_rng(seed)
    n = envs.num_envs
    envs.reset(seed=seed)
    returns, ended, terminated = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
    for _ in range(horizon):
        act = rng.integers(envs.single_action_space.n, size=n) if action == RANDOM else np.full(n, action)
        _, reward, term, trunc, _ = envs.step(act)
        returns += np.where(ended, 0.0, reward)
        terminated |= ~ended & term
        ended |= term | trunc
        if ended.all():
            break
    return returns, terminated.astype(float)


def real_returns(env: gym.Env, action: int, horizon: int, episodes: int, warmup: tuple[int, int],
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(returns, terminated) float (E,) of `action` held for `horizon` decisions in the real `env` (one
    decision per step, e.g. `HoldAction`), each after a random-policy warm-up; episodes that end during
    the warm-up are skipped, so E <= `episodes`."""
    rng = np.random.default_rng(seed)
    n = env.action_space.n
    returns, terminated = [], []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        alive = True
        for _ in range(int(rng.integers(warmup[0], warmup[1] + 1))):
            _, _, term, trunc, _ = env.step(int(rng.integers(n)))
            if term or trunc:
                alive = False
                break
        if not alive:
            continue
        ret, died = 0.0, False
        for _ in range(horizon):
            _, reward, term, trunc, _ = env.step(int(rng.integers(n)) if action == RANDOM else action)
            ret += float(reward)
            if term or trunc:
                died = bool(term)
                break
        returns.append(ret)
        terminated.append(float(died))
    return np.array(returns), np.array(terminated)


def held_action_report(envs: Any, env: gym.Env, horizon: int, episodes: int, warmup: tuple[int, int] = (20, 100),
                       seed: int = 0, action_names: list[str] | None = None,
                       progress: Any = None) -> dict[str, Any]:
    """Imagined (`envs`: vector env over the simulator) against real (`env`) returns for every held action
    and the random policy; see the module docstring. `progress(name)` is called before each script."""
    if envs.single_action_space != env.action_space or not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"held-action calibration needs one Discrete action space in both worlds, got "
                         f"{envs.single_action_space} (imagined) and {env.action_space} (real)")
    if horizon < 1 or episodes < 2 or not 0 <= warmup[0] <= warmup[1]:
        raise ValueError(f"need horizon >= 1, episodes >= 2 and 0 <= warmup[0] <= warmup[1], got {horizon}, "
                         f"{episodes}, {warmup}")
    n = env.action_space.n
    names = action_names or [str(a) for a in range(n)]
    rows = {}
    for action, name in [(a, names[a]) for a in range(n)] + [(RANDOM, "random")]:
        if progress is not None:
            progress(name)
        ir, it = imagined_returns(envs, action, horizon, seed)
        rr, rt = real_returns(env, action, horizon, episodes, warmup, seed)
        rows[name] = {"imagined": {"return": mean_ci95(ir), "terminated": float(it.mean()), "episodes": len(ir)},
                      "real": {"return": mean_ci95(rr) if len(rr) else None,
                               "terminated": float(rt.mean()) if len(rt) else None, "episodes": len(rr)}}
    per_step = [rows[name]["imagined"]["return"]["mean"] / horizon for name in rows]
    return {"horizon": horizon, "warmup": list(warmup), "seed": seed, "scripts": rows,
            "imagined_mean_per_step": float(np.mean(per_step))}
