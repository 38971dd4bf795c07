"""Crafter's own score for agents, measured in the real game.

The Crafter paper (Hafner, 2021) scores an agent by the success rate of each of its 22 achievements
(the share of episodes in which the achievement was unlocked at least once) and sums them up with a
geometric mean, so rare achievements count: ``score = exp(mean_i ln(1 + s_i)) - 1`` with ``s_i`` in
percent. Random play scores about 1.6%, DreamerV3 14.5% after 1M steps. The interval on the score
is a percentile bootstrap over episodes (the score is not a mean of per-episode values); the return
gets the Student-t interval used everywhere in `worldsim.eval` (`mean_ci95`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from worldsim.agents.base import Agent
from worldsim.eval.compare import mean_ci95
from worldsim.eval.episodes import roll_real

BOOTSTRAP = 2000  # resamples of the episodes for the score's interval


def crafter_score(unlocked: np.ndarray) -> float:
    """Score in percent from per-episode unlocks, bool (episodes, achievements): Crafter's geometric mean."""
    unlocked = np.asarray(unlocked, bool)
    if unlocked.ndim != 2 or unlocked.shape[0] == 0:
        raise ValueError(f"unlocks must be (episodes >= 1, achievements), got shape {unlocked.shape}")
    rates = 100.0 * unlocked.mean(axis=0)
    return float(np.exp(np.log1p(rates).mean()) - 1.0)


def score_ci95(unlocked: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP) -> dict[str, Any]:
    """The score and its 95% percentile-bootstrap interval over episodes."""
    unlocked = np.asarray(unlocked, bool)
    rng = np.random.default_rng(seed)
    n = unlocked.shape[0]
    draws = [crafter_score(unlocked[rng.integers(0, n, n)]) for _ in range(resamples)] if n > 1 else []
    mean = crafter_score(unlocked)
    lo, hi = (np.percentile(draws, [2.5, 97.5]) if draws else (mean, mean))
    return {"mean": mean, "ci95": [float(lo), float(hi)]}


def evaluate_crafter(agent: Agent, seeds: Sequence[int], max_steps: int, hold: int = 1,
                     size: tuple[int, int] = (64, 64)) -> dict[str, Any]:
    """Play one real Crafter episode per seed (at most `max_steps` env steps, each action held `hold` of them).

    Returns ``score`` and ``return`` (each ``{"mean", "ci95"}``), ``success`` (achievement -> share of
    episodes that unlocked it), ``episodes``, ``env_steps`` (real steps played in all), and per-episode
    ``returns`` and ``lengths``.
    """
    import gymnasium

    from worldsim.envs import REAL_ENVS
    from worldsim.envs.crafter import ACHIEVEMENT_KEYS

    if not seeds:
        raise ValueError("evaluate_crafter needs at least one seed")
    env = gymnasium.make(REAL_ENVS["crafter"], size=size)
    try:
        episodes = [roll_real(env, agent, max_steps, seed=int(s), hold=hold) for s in seeds]
    finally:
        env.close()
    unlocked = np.stack([e.state["achievements"][-1] > 0 for e in episodes])  # (episodes, 22): counts at the end
    returns = [float(e.reward.sum()) for e in episodes]
    return {"score": score_ci95(unlocked), "return": mean_ci95(returns),
            "success": {k: float(v) for k, v in zip(ACHIEVEMENT_KEYS, unlocked.mean(axis=0))},
            "episodes": len(episodes), "env_steps": int(sum(len(e.actions) for e in episodes)),
            "returns": returns, "lengths": [len(e.actions) for e in episodes]}


def success_plot(path: Any, agents: dict[str, dict[str, Any]], title: str = "Crafter: achievement success rates") -> Any:
    """PNG of each agent's per-achievement success rate (bars, Wilson 95% whiskers), achievements in
    Crafter's order; `agents` {name: {"success": {achievement: rate}, "episodes": n}}."""
    from worldsim.eval.plots import bar_plot
    from worldsim.eval.probes import wilson_interval

    keys = list(next(iter(agents.values()))["success"])
    series = {name: [a["success"][k] for k in keys] for name, a in agents.items()}
    errors = {name: [wilson_interval(round(a["success"][k] * a["episodes"]), a["episodes"]) for k in keys]
              for name, a in agents.items()}
    return bar_plot(path, title, "share of episodes with the achievement", keys, series, errors)
