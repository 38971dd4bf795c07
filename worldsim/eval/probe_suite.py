"""The probe suite: real probe-world episodes per family, scored on real or simulated frames.

For each family and held-out scenario seed the real probe world is rolled with the family's
scripted agent (`agents.probe`: push for ``push``, noop otherwise). The real frames scored against
their own ground truth give the ceiling (100% by construction of the scorer, and tested); the
simulator, given the first `context` real frames and the same actions, produces the frames whose
scores measure it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np

from worldsim.eval.episodes import RealEpisode, roll_real  # noqa: F401  (RealEpisode: see ProbeEpisode)
from worldsim.eval.probes import ProbeResult, ProbeScoreConfig, score_episode, summarise

PROBE_FAMILIES = ("permanence", "fall_bounce", "collision", "push", "random")


@dataclass
class ProbeSuiteConfig:
    """Which probe episodes to run and how to score them."""

    families: tuple[str, ...] = PROBE_FAMILIES
    seeds: int = 8  # scenario seeds per family
    first_seed: int = 100_000  # held out: collection draws scenario seeds from the env's generator
    steps: int = 48  # env steps per episode (frames = steps + 1)
    size: int = 64  # frame height and width
    context: int = 1  # real frames given to the simulator before it takes over
    hold: int = 1  # the agent acts every `hold` steps (k of the simulator) and its action is held
    score: ProbeScoreConfig = field(default_factory=ProbeScoreConfig)


@dataclass
class ProbeEpisode:
    family: str
    seed: int
    episode: RealEpisode
    admissible: dict = field(default_factory=dict, repr=False, compare=False)  # admissible_states, per (start, size)


def probe_policy(family: str) -> str:
    """Name (in `agents.POLICIES`) of the scripted agent for a probe family."""
    return "push" if family == "push" else "noop"


def real_probe_episodes(cfg: ProbeSuiteConfig) -> list[ProbeEpisode]:
    """Roll the real probe world once per (family, seed) with the family's scripted agent."""
    from worldsim import envs
    from worldsim.agents import make_policy

    env = envs.make_real_env("probe", size=cfg.size, max_episode_steps=cfg.steps)
    out = []
    try:
        for family in cfg.families:
            for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
                agent = make_policy(probe_policy(family), env.action_space, 1)
                ep = roll_real(env, agent, cfg.steps, options={"family": family, "scenario_seed": seed}, hold=cfg.hold)
                out.append(ProbeEpisode(family, seed, ep))
    finally:
        env.close()
    return out


def replay_with_restitution(env: gymnasium.Env, reset: dict[str, Any], actions: list[Any], start: int,
                            restitution: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Frames (T + 1, H, W, 3) and ground truth of the probe world `env` reset with `reset` (`env.reset`'s keywords)
    and stepped with `actions`, exactly, except that its walls' and floor's restitution is `restitution` from frame
    `start` on (the first frame a simulator given `start` real frames draws)."""
    obs, info = env.reset(**reset)
    frames, states = [obs], [info["state"]]
    for t, action in enumerate(actions):
        if t == start - 1:
            env.unwrapped.world.restitution = float(restitution)
        obs, _, _, _, info = env.step(action)
        frames.append(obs)
        states.append(info["state"])
    return np.stack(frames), {k: np.stack([s[k] for s in states]) for k in states[0]}


def admissible_states(pe: ProbeEpisode, start: int, size: int, step: float = 0.005) -> list[tuple[float, dict]]:
    """(restitution, ground truth) of a fall_bounce episode's scenario and actions with its restitution set to
    each value of `FALL_BOUNCE_RESTITUTION` (every `step`) from frame `start` on (the first generated frame):
    the trajectories a simulator that sees only the frames before could rightly draw (`score_fall_bounce`).
    Kept on the episode: every scheme of an evaluation scores against the same ones."""
    from worldsim import envs
    from worldsim.envs.probe.scenarios import FALL_BOUNCE_RESTITUTION

    key = (start, size, step)
    if key not in pe.admissible:
        low, high = FALL_BOUNCE_RESTITUTION
        env = envs.make_real_env("probe", size=size, max_episode_steps=len(pe.episode.actions))
        reset = {"options": {"family": pe.family, "scenario_seed": pe.seed}}
        try:
            pe.admissible[key] = [(float(e), replay_with_restitution(env, reset, pe.episode.actions, start, e)[1])
                                  for e in np.round(np.arange(low, high + step / 2, step), 6)]
        finally:
            env.close()
    return pe.admissible[key]


def score_suite(episodes: list[ProbeEpisode], cfg: ProbeSuiteConfig,
                frames: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Score every episode on its real frames (`frames` None) or on given (simulated) ones.

    ``frames[i]`` is uint8 (T + 1, H, W, 3) for episode i: its first `cfg.context` frames are the
    real context, the rest generated from them and the episode's actions.

    Returns:
        {"summary": {check: {accuracy, ci95, passed, scored, no_event}},
         "episodes": [{family, seed, checks: {check: {passed, details}}}],
         "fall_bounce_error_px": mean trajectory error per horizon over fall_bounce episodes,
         "fall_bounce_strict": {passed, scored}: fall_bounce episodes that followed the true restitution}
    """
    results: list[ProbeResult] = []
    rows, curves = [], []
    start = cfg.context if frames is not None else 1
    if frames is not None and len(frames) != len(episodes):
        raise ValueError(f"{len(frames)} frame sequences for {len(episodes)} probe episodes")
    for i, pe in enumerate(episodes):
        seen = pe.episode.frames if frames is None else frames[i]
        if seen.shape != pe.episode.frames.shape:
            raise ValueError(f"generated frames have shape {seen.shape}, the real episode {pe.episode.frames.shape}")
        admissible = admissible_states(pe, start, cfg.size) if pe.family == "fall_bounce" else None
        rs = score_episode(seen, pe.episode.state, pe.family, start=start, cfg=cfg.score, admissible=admissible)
        results += rs
        rows.append({"family": pe.family, "seed": pe.seed,
                     "checks": {r.check: {"passed": r.passed, "details": r.details} for r in rs}})
        for r in rs:
            if r.check == "fall_bounce" and r.passed is not None:
                curves.append([np.nan if e is None else e for e in r.details["error_px_per_horizon"]])
    curve = None
    if curves:
        n = min(len(c) for c in curves)
        arr = np.array([c[:n] for c in curves], np.float64)  # (E, n); inf where a ball was lost
        with np.errstate(invalid="ignore"):
            curve = [None if not np.isfinite(v) else float(v) for v in np.nanmedian(arr, axis=0)]
    strict = [r.details["passed_strict"] for r in results if r.check == "fall_bounce" and r.passed is not None]
    return {"summary": summarise(results), "episodes": rows, "fall_bounce_error_px": curve,
            "fall_bounce_strict": {"passed": int(sum(strict)), "scored": len(strict)}}
