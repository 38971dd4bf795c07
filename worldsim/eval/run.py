"""`worldsim eval`: every measurement, for every context scheme, into one report.

Without a checkpoint the simulator is replaced by the real world itself, which gives the ceiling
of every metric (and exercises the whole report); with one, each context scheme gets its own
`SimRunner` and every measurement is made per scheme.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from tqdm.auto import tqdm

from worldsim.eval.compare import per_horizon
from worldsim.eval.config import EvalConfig
from worldsim.eval.consistency import LOOPS, Loop, loop_scores
from worldsim.eval.paired import Paired, paired_rollouts, replay_paired

REAL = "real (ceiling)"  # the "scheme" name of real-vs-real rows


@dataclass
class EvalResult:
    out: Path
    json_path: Path
    markdown_path: Path
    results: dict[str, Any]


def _runners(cfg: EvalConfig) -> dict[str, Any]:
    """{scheme: SimRunner}, or {REAL: None} without a checkpoint."""
    if cfg.checkpoint is None:
        return {REAL: None}
    from worldsim.eval.simulated import SimRunner
    from worldsim.sim.config import SimConfig

    return {s: SimRunner(cfg.checkpoint, SimConfig(context=s, context_frames=cfg.context_frames, context_budget=cfg.context_budget,
                                                   sampling_steps=cfg.sampling_steps, guidance_scale=cfg.guidance_scale,
                                                   sampler=cfg.sampler, shift=cfg.shift, context_noise=cfg.context_noise,
                                                   reencode=cfg.reencode, dtype=cfg.dtype, device=cfg.device),
                         num_envs=cfg.num_envs) for s in cfg.schemes}


def _frame_size(cfg: EvalConfig, runners: dict[str, Any]) -> int:
    runner = next(iter(runners.values()))
    if runner is None:
        return cfg.size or 64
    h, w = runner.frame_size
    if h != w:
        raise ValueError(f"the model's frames are {h}x{w}; the real worlds render square frames")
    if cfg.size is not None and cfg.size != h:
        raise ValueError(f"size={cfg.size} but the model {cfg.checkpoint} makes {h}x{w} frames")
    return h


def _sim_or_real(p: Paired) -> np.ndarray:
    return p.sim if p.sim is not None else p.real.copy()


def _autoencoder_ceiling(first: Paired, sim: Any, cfg: EvalConfig) -> dict[str, Any]:
    """Real vs the simulator's autoencoder on the real frames: each episode's context (as many frames as the simulator
    reads: `paired_rollouts` rolls exactly those) and its continuation encoded and decoded in one pass. No simulator
    scores above what perfect latents draw."""
    c, m = first.context, first.real.shape[1]
    drawn = np.stack([sim.reconstruct(ep.frames[:c + m])[c:] for ep in first.episodes])
    return per_horizon(first.real, drawn, k=first.k, horizons=tuple(cfg.horizons))


def run_eval(cfg: EvalConfig) -> EvalResult:
    """Run every enabled measurement and write the report under `cfg.out`."""
    from worldsim.eval.report import write_report

    if cfg.seeds < 2:
        raise ValueError(f"seeds must be >= 2 (confidence intervals need two episodes), got {cfg.seeds}")
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runners = _runners(cfg)
    try:
        size = _frame_size(cfg, runners)
        seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
        results: dict[str, Any] = {"config": asdict(cfg), "frame_size": size, "schemes": list(runners), "skipped": {}}
        if cfg.checkpoint is not None:  # what the simulator used where the config left it (the export's or trained)
            sim = next(iter(runners.values())).sim
            results["context_budget_used"], results["reencode_used"] = sim.scheme.budget, sim.reencode
            results["dtype_used"] = "bfloat16" if sim.autocast else "float32"
        if any(r is not None and r.action_space is None for r in runners.values()):
            results = _footage_only(cfg, runners, results)
            results["seconds"] = time.perf_counter() - start
            json_path, md_path = write_report(results, {}, out, videos=False)
            return EvalResult(out, json_path, md_path, results)
        tasks = ["real_vs_sim"] + (["idm"] if cfg.idm else []) + (["probes"] if cfg.probes and cfg.world == "probe" else []) \
            + (["consistency"] if cfg.consistency else []) + ["minecraft"]
        bar = tqdm(total=len(tasks) * len(runners), desc="eval", disable=not cfg.progress)
        paired: dict[str, Paired] = {}
        results["real_vs_sim"] = {}
        for scheme, runner in runners.items():  # a seed whose real episode ends too early is replaced, for every scheme
            p = paired_rollouts(cfg.world, seeds, cfg.steps, runner=runner, size=size, replace_short=True)
            if p.seeds != seeds:
                results["seeds_replaced"] = {"short": sorted(set(seeds) - set(p.seeds)),
                                             "by": sorted(set(p.seeds) - set(seeds))}
                seeds = p.seeds
            paired[scheme] = p
            results["real_vs_sim"][scheme] = per_horizon(p.real, _sim_or_real(p), k=p.k, horizons=tuple(cfg.horizons))
            bar.update(1)
        first = next(iter(paired.values()))  # the real episodes (every scheme rolls the same seeds and policy)
        last = np.stack([ep.frames[first.context - 1] for ep in first.episodes])  # the last context frame
        results["copy_baseline"] = per_horizon(first.real, np.repeat(last[:, None], first.real.shape[1], axis=1),
                                               k=first.k, horizons=tuple(cfg.horizons))
        if cfg.checkpoint is not None:
            results["autoencoder_ceiling"] = _autoencoder_ceiling(first, next(iter(runners.values())).sim, cfg)
        if cfg.world in REAL_TIME_WORLDS:  # the same seed and actions do not give the same frames: measure by how much
            results["real_floor"] = per_horizon(first.real, replay_paired(cfg.world, first, size, seeds), k=first.k,
                                                horizons=tuple(cfg.horizons))
        if cfg.idm:
            results["idm"] = _idm(cfg, paired, size, bar)
        if cfg.probes and cfg.world == "probe":
            results["probes"] = _probes(cfg, runners, size, bar)
        elif cfg.probes:
            results["skipped"]["probes"] = f"probes run on the probe world; world={cfg.world}"
        if cfg.consistency:
            results["consistency"] = _consistency(cfg, runners, size, seeds, bar)
        results["minecraft"] = _minecraft(cfg, runners, size)
        bar.update(len(runners))
        bar.close()
        results["seconds"] = time.perf_counter() - start
        json_path, md_path = write_report(results, paired, out, videos=cfg.videos)
    finally:
        for r in runners.values():
            if r is not None:
                r.close()
    return EvalResult(out, json_path, md_path, results)


def _footage_only(cfg: EvalConfig, runners: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """An action-free model (trained on video without actions) is scored on footage continuation alone."""
    if cfg.video_store is None:
        raise ValueError("an action-free model continues footage and takes no actions in a world: give video_store=STORE")
    why = "an action-free model takes no actions: it is scored on footage continuation (video_store) only"
    results["real_vs_sim"], results["footage_only"] = {}, True
    for task in ("real_vs_sim", "idm", "probes", "consistency"):
        results["skipped"][task] = why
    results["minecraft"] = {"video": _video_continuation(cfg, runners)}
    return results


REAL_TIME_WORLDS = ("minetest",)  # worlds whose replays differ (the game runs in real time): a real-vs-real floor is reported
VISIBLE_ACTIONS = {"crafter": (1, 2, 3, 4)}  # actions that change the frame in nearly every state: Crafter's moves


def idm_frames(steps: int, k: int) -> int:
    """Frames of each random-play episode the judge trains on, for a comparison of `steps` latent steps of k frames."""
    return max(steps, 16) * k


def _idm(cfg: EvalConfig, paired: dict[str, Paired], size: int, bar) -> dict[str, Any]:
    """Train the IDM on real episodes; its accuracy on real and simulated frames of the comparison."""
    from worldsim.eval.idm import IDMConfig, frame_pairs, idm_accuracy, pairs_from_store, random_play_pairs, train_idm

    first = next(iter(paired.values()))
    space = None
    if cfg.idm_data is not None:
        from worldsim.data.store import EpisodeStore

        with EpisodeStore.open(cfg.idm_data) as store:
            space = store.action_space
            if not isinstance(space, spaces.Discrete):
                return {"skipped": f"{cfg.idm_data} records {space}; the inverse-dynamics model needs Discrete actions"}
            x, y = pairs_from_store(store)
    else:  # fresh random-policy episodes of the real world; ones that end early still give pairs
        from worldsim import envs

        env = envs.make_real_env(cfg.world, size=size)
        space = env.action_space
        if not isinstance(space, spaces.Discrete):
            env.close()
            return {"skipped": f"the inverse-dynamics model needs a Discrete action space, {cfg.world} has {space}"}
        try:
            x, y = random_play_pairs(env, cfg.idm_episodes, idm_frames(cfg.steps, first.k), first.k)
        finally:
            env.close()
    model = train_idm(x, y, int(space.n), IDMConfig(steps=cfg.idm_train_steps))
    out: dict[str, Any] = {"train_pairs": int(len(x)), "chance": 1.0 / int(space.n), "schemes": {}}
    for scheme, p in paired.items():
        before = np.stack([ep.frames[p.context - 1] for ep in p.episodes])[:, None]  # (N, 1, H, W, 3)
        labels = np.array([[a for a in acts for _ in range(p.k)] for acts in p.actions])  # (N, m k)
        real_x, real_y = frame_pairs(np.concatenate([before, p.real], 1), labels)
        sim_x, sim_y = frame_pairs(np.concatenate([before, _sim_or_real(p)], 1), labels)
        acc_real, acc_sim = idm_accuracy(model, real_x, real_y), idm_accuracy(model, sim_x, sim_y)
        out["schemes"][scheme] = {"real": acc_real, "sim": acc_sim, "gap": acc_real - acc_sim}
        moves = VISIBLE_ACTIONS.get(cfg.world)
        if moves is not None:  # the discriminating part of the judge, reported beside the whole
            mr, ms = idm_accuracy(model, real_x, real_y, only=moves), idm_accuracy(model, sim_x, sim_y, only=moves)
            none = np.isnan(mr)  # no move in these episodes: nothing to report (JSON has no NaN)
            out["schemes"][scheme].update({"real_moves": None if none else mr, "sim_moves": None if none else ms,
                                           "gap_moves": None if none else mr - ms})
            out["move_actions"] = list(moves)
        bar.update(1)
    return out


def _probes(cfg: EvalConfig, runners: dict[str, Any], size: int, bar) -> dict[str, Any]:
    from worldsim.eval.probe_suite import ProbeSuiteConfig, real_probe_episodes, score_suite

    out: dict[str, Any] = {}
    ceiling_done = False
    for scheme, runner in runners.items():
        k = runner.k if runner is not None else 1
        context = runner.context_rows if runner is not None else 1
        pcfg = ProbeSuiteConfig(seeds=cfg.probe_seeds, steps=context - 1 + cfg.probe_steps * k, size=size,
                                context=context, hold=k, first_seed=cfg.first_seed)
        episodes = real_probe_episodes(pcfg)
        if not ceiling_done:
            out[REAL] = score_suite(episodes, pcfg)
            ceiling_done = True
        if runner is not None:
            sim = runner.rollout([pe.episode.frames[:context] for pe in episodes],
                                 [pe.episode.actions[:context - 1] for pe in episodes],
                                 [[pe.episode.actions[context - 1 + j * k] for j in range(cfg.probe_steps)]
                                  for pe in episodes])
            frames = [np.concatenate([pe.episode.frames[:context], s]) for pe, s in zip(episodes, sim)]
            out[scheme] = score_suite(episodes, pcfg, frames)
        bar.update(1)
    return out


def _consistency(cfg: EvalConfig, runners: dict[str, Any], size: int, seeds: list[int], bar) -> dict[str, Any]:
    if cfg.world not in LOOPS:
        return {"skipped": f"no look-away-and-back loop defined for {cfg.world}"}
    loop_def = LOOPS[cfg.world]
    out: dict[str, Any] = {"loop": {"away": loop_def["away"], "back": loop_def["back"]}, "schemes": {}}
    for scheme, runner in runners.items():
        rows = []
        for n in cfg.loop_lengths:
            loop = Loop(n, loop_def["away"], loop_def["back"])
            p = paired_rollouts(cfg.world, seeds, 2 * n, runner=runner, size=size, actions=loop.actions(),
                                reset_options=loop_def["options"], replace_short=True)
            before = np.stack([ep.frames[p.context - 1] for ep in p.episodes])
            real_back, sim_back = p.real[:, -1], _sim_or_real(p)[:, -1]
            scores = loop_scores(before, real_back, sim_back)
            rows.append({"n": n, **({"seeds": p.seeds} if p.seeds != seeds else {}),
                         **{name: _mean(s) for name, s in scores.items()},
                         # per seed, to tell a simulator that forgot from a real walk that was blocked
                         "psnr_per_seed": {name: [round(v, 3) for v in s["psnr"]] for name, s in scores.items()}})
        out["schemes"][scheme] = rows
        bar.update(1)
    return out


def _mean(scores: dict[str, list[float]]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in scores.items()}


def _minecraft(cfg: EvalConfig, runners: dict[str, Any], size: int) -> dict[str, Any]:
    """Real vs simulated against MineDojo (when it starts) and continuation of imported real video."""
    out: dict[str, Any] = {}
    if cfg.minedojo:
        try:
            from worldsim import envs

            envs.make_real_env("minedojo", size=size).close()
        except Exception as e:  # noqa: BLE001 - any failure to start MineDojo is reported, not raised
            out["minedojo"] = {"skipped": f"MineDojo cannot start here: {str(e).splitlines()[0] if str(e) else type(e).__name__}"}
        else:
            out["minedojo"] = {"skipped": "MineDojo starts, but the model was not trained on it (use world=minedojo)"}
    if cfg.video_store is not None:
        out["video"] = _video_continuation(cfg, runners)
    else:
        out["video"] = {"skipped": "no imported video store given (video_store=STORE)"}
    return out


def _video_continuation(cfg: EvalConfig, runners: dict[str, Any]) -> dict[str, Any]:
    """Given the first frames of each imported clip, simulate the rest; per-horizon PSNR/SSIM."""
    from worldsim.data.store import EpisodeStore

    out: dict[str, Any] = {"schemes": {}}
    with EpisodeStore.open(cfg.video_store) as store:
        for scheme, runner in runners.items():
            k = runner.k if runner is not None else 1
            context = runner.context_rows if runner is not None else 1
            need = context + cfg.steps * k
            clips = [store.episode(i) for i in range(store.num_episodes)]
            clips = [c for c in clips if len(c["obs"]) >= need][: cfg.seeds]
            if not clips:
                return {"skipped": f"no clip in {cfg.video_store} has the {need} frames a continuation needs"}
            real = np.stack([c["obs"][context:need] for c in clips])
            if runner is None:
                sim = real.copy()
            elif runner.action_space is None or store.action_space != runner.action_space or \
                    not all(bool(c["has_action"][1:].all()) for c in clips):
                # no usable actions (action-free footage, or actions of another space): the null action each step
                sim = runner.continue_free([c["obs"][:context] for c in clips], cfg.steps)
                out["actions"] = "none (null action)"
            else:
                from worldsim.spaces import unpack_action

                acts = [[unpack_action(store.action_space, row) for row in c["action"][1:]] for c in clips]
                sim = runner.rollout([c["obs"][:context] for c in clips], [a[:context - 1] for a in acts],
                                     [[a[context - 1 + j * k] for j in range(cfg.steps)] for a in acts])
            out["schemes"][scheme] = per_horizon(real, sim, k=k, horizons=tuple(cfg.horizons))
    return out
