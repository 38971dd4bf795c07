"""`worldsim imagine`: the Dyna loop of DIAMOND, one command.

    for each iteration:
        collect    real episodes with the current agent (the first iteration: a random one) into the store
        world      continue training the simulator's DiT on the grown store (a resumed DeepSpeed run)
        agent      train the actor-critic inside the simulator: learned reward and termination, every
                   imagined episode started from real context frames of the store (DIAMOND's burn-in)
        eval       play the agent in the real world: return and, for Crafter, Crafter's own score

The agent is trained only in imagination; the real world gives it data (through the world model) and
is where it is judged. A random agent, holding its actions as long (k frames), is scored once on the
same evaluation seeds as the reference. Everything lands in `out`: the store, the world-model run,
one agent per iteration, `loop.json` (the state and every result), `results.json` (the latest, in
the layout of docs/imagination) and TensorBoard scalars (real score and return per iteration).

Resume: run the same command again (same `out`); every finished phase is skipped, a world-model run
continues from its last checkpoint, an interrupted collection only adds the episodes it still lacks,
and an interrupted agent or evaluation phase is redone from its start (each is seeded, so it gives
the same result). `iterations` may be raised to go on; other fields must match the first run.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

PHASES = ("collect", "world", "agent", "eval")
EVAL_SEED = 10_000  # real evaluation episodes use seeds EVAL_SEED + i: away from collection's seeds
COLLECT_SEED = 50_000  # episode j collected by the loop resets with COLLECT_SEED + seed + j
DIT_ARCHITECTURE = ("patch_size", "temporal_patch", "dim", "depth", "heads", "mlp_ratio", "qk_norm", "reward_head",
                    "termination_head", "rope_theta_time", "rope_theta_space", "previous_frame", "motion_radius",
                    "motion_groups")
RESUMABLE = ("iterations", "progress", "threads")  # fields a resumed loop may change


@dataclass
class ImagineConfig:
    """`worldsim imagine [checkpoint=crafter iterations=N ...]`: sizes of every phase."""

    checkpoint: str = "crafter"  # simulator to start from: a DiT export folder or a shipped name (crafter, probes)
    world: str = "crafter"  # the real world it imitates: crafter | probe | probe-push (the probe world's RL task)
    out: str | None = None  # loop folder; None: runs/imagine/<timestamp>. An existing one is resumed
    base_store: str | None = None  # episodes to start from (copied into out once, e.g. the simulator's training store)
    iterations: int = 3  # collect -> world -> agent -> eval rounds
    collect_episodes: int = 4  # real episodes added per iteration
    max_episode_steps: int = 500  # cap per collected and per evaluation episode (real steps)
    world_model_steps: int = 200  # DiT optimizer steps per iteration on the grown store; 0 keeps the simulator
    window: int = 17  # real frames per DiT training window (1 + m k)
    batch_size: int = 8
    lr: float = 3e-4  # DiT learning rate (constant after a short warm-up: a continued run)
    context_noise_max: float = 0.1  # DiT context frames noised up to this level (as the shipped simulators trained)
    reward_balance: bool = False  # rewarded and unrewarded frames weigh half each in the reward loss (sparse rewards)
    heads_max_noise: float = 1.0  # reward/termination heads learn only from frames noised at most this much
    reward_model: str = "dit"  # dit: the DiT's reward/termination heads | frames: a frame CNN trained each iteration (models.frame_heads)
    reward_model_steps: int = 1000  # frame model optimizer steps per iteration (reward_model=frames)
    agent_steps: int = 4096  # imagined agent steps per iteration (summed over sub-envs)
    agent_epochs: int = 1  # passes over each imagined rollout: 1 is A2C, > 1 PPO's clipped objective (agents.train_ac)
    agent_minibatches: int = 1  # gradient steps per pass (with agent_epochs > 1)
    agent_entropy: float = 0.001  # the agent's entropy bonus weight
    agent_unimix: float = 0.0  # share of the uniform policy mixed into the agent's (DreamerV3: 0.01)
    num_envs: int = 8  # imagined worlds stepped as one batch
    imagination_horizon: int = 15  # steps of each imagined episode (DIAMOND: 15)
    sampling_steps: int = 1  # denoising steps per simulator step
    context_frames: int = 2  # latent frames of real context at each imagined reset
    eval_episodes: int = 20  # real evaluation episodes per iteration (and for the random reference)
    seed: int = 0
    threads: int = 2  # torch CPU threads
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("iterations", "collect_episodes", "max_episode_steps", "window", "batch_size", "agent_steps",
                     "agent_epochs", "agent_minibatches", "num_envs", "imagination_horizon", "sampling_steps",
                     "context_frames", "reward_model_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.world_model_steps < 0:
            raise ValueError(f"world_model_steps must be >= 0, got {self.world_model_steps}")
        if self.eval_episodes < 2:
            raise ValueError(f"eval_episodes must be >= 2 (a 95% interval needs two episodes), got {self.eval_episodes}")
        if self.reward_model not in ("dit", "frames"):
            raise ValueError(f"reward_model must be dit or frames, got {self.reward_model!r}")
        if self.world not in ("crafter", "probe", "probe-push"):
            raise ValueError(f"world must be crafter, probe or probe-push (the real worlds that run here), got {self.world!r}")


def run_imagine(cfg: ImagineConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the loop; returns the final `results.json` content."""
    import torch

    from worldsim.export import read_export_config
    from worldsim.pretrained import resolve_checkpoint

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out) if cfg.out else Path("runs") / "imagine" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "loop.json"
    state = _load_state(state_path, cfg)
    start = Path(resolve_checkpoint(cfg.checkpoint))
    meta = read_export_config(start)
    if meta.get("kind") != "dit":
        raise ValueError(f"{cfg.checkpoint} is not a simulator (DiT) export")
    k = int(meta["compression"]["temporal"])
    size = int(meta["frame_size"][0])
    store = out / f"{cfg.world}.zarr"
    if cfg.base_store and not store.exists():
        log(f"[imagine] copying {cfg.base_store} into {store}")
        shutil.copytree(cfg.base_store, store)

    def save() -> None:
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(state_path)

    writer = _writer(out)
    seeds = [EVAL_SEED + cfg.seed * 1000 + i for i in range(cfg.eval_episodes)]
    if "random" not in state:
        from worldsim.agents.random import RandomAgent
        from worldsim.envs import make_real_env

        log(f"[imagine] random agent in the real {cfg.world} world: {cfg.eval_episodes} episodes (the reference)")
        space = make_real_env(cfg.world, size=size).action_space
        state["random"] = evaluate_agent(cfg.world, RandomAgent(space, 1, seed=cfg.seed), seeds, cfg.max_episode_steps, k, size)
        save()
    _scalars(writer, "random", state["random"], 0)

    for i in range(len(state["iterations"]), cfg.iterations):
        state["iterations"].append({})
    for i in range(cfg.iterations):
        it = state["iterations"][i]
        if all(p in it for p in PHASES):
            continue
        previous_agent = state["iterations"][i - 1]["agent"]["weights"] if i else None
        simulator = state["iterations"][i - 1]["world"]["export"] if i else str(start)
        tag = f"[imagine {i + 1}/{cfg.iterations}]"
        if "collect" not in it:
            it.setdefault("collect_target", _store_size(store)[0] + cfg.collect_episodes)
            save()
            missing = it["collect_target"] - _store_size(store)[0]
            log(f"{tag} collect: {missing} real episodes with {'the agent of iteration ' + str(i) if previous_agent else 'a random agent'}")
            if missing > 0:
                _collect(cfg, store, size, missing, previous_agent)
            episodes, frames = _store_size(store)
            it["collect"] = {"episodes": episodes, "frames": frames}
            save()
        if "world" not in it:
            if cfg.world_model_steps:
                log(f"{tag} world model: {cfg.world_model_steps} DiT steps on {it['collect']['episodes']} episodes")
                export = _train_world_model(cfg, store, start, meta, out / "world", (i + 1) * cfg.world_model_steps)
            else:
                export = simulator
            it["world"] = {"export": str(export), "steps": (i + 1) * cfg.world_model_steps}
            save()
        if cfg.reward_model == "frames" and "reward" not in it:
            log(f"{tag} reward model: {cfg.reward_model_steps} steps on the real transitions of {it['collect']['episodes']} episodes")
            it["reward"] = _train_reward_model(cfg, store, out / f"reward_{i + 1}.safetensors", i)
            save()
        if "agent" not in it:
            log(f"{tag} agent: {cfg.agent_steps} steps in imagination ({cfg.num_envs} worlds, horizon {cfg.imagination_horizon})")
            it["agent"] = _train_agent(cfg, it["world"]["export"], store, previous_agent, out / f"agent_{i + 1}.safetensors", i,
                                       it.get("reward", {}).get("weights"))
            save()
        if "eval" not in it:
            from worldsim.agents.actor_critic import ActorCriticAgent
            from worldsim.envs import make_real_env

            log(f"{tag} eval: {cfg.eval_episodes} real episodes")
            space = make_real_env(cfg.world, size=size).action_space
            agent = ActorCriticAgent.load(it["agent"]["weights"], space, 1, seed=cfg.seed)
            it["eval"] = evaluate_agent(cfg.world, agent, seeds, cfg.max_episode_steps, k, size)
            save()
        _scalars(writer, "imagination", it["eval"], i + 1)
        log(f"{tag} {_summary(it['eval'])}  (random: {_summary(state['random'])})")
    if writer is not None:
        writer.close()
    results = _results(cfg, state)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot_iterations(results, out)
    return results


def plot_iterations(results: dict[str, Any], folder: str | Path) -> list[Path]:
    """PNGs of the real score, return and success per loop iteration (random as a flat reference), from a
    `results.json` of `run_imagine`; in Crafter also the last iteration's per-achievement success."""
    from worldsim.eval.plots import line_plot

    rows, paths = results["per_iteration"], []
    for metric in ("score", "return", "success"):
        if not rows or "mean" not in rows[0].get(metric, {}):  # Crafter's "success" is per achievement: below
            continue
        its = [r["iteration"] for r in rows]
        series = {"imagination": (its, [r[metric]["mean"] for r in rows]),
                  "95% low": (its, [r[metric]["ci95"][0] for r in rows]),
                  "95% high": (its, [r[metric]["ci95"][1] for r in rows])}
        if metric in results["random"]:
            series["random"] = (its, [results["random"][metric]["mean"]] * len(its))
        paths.append(line_plot(Path(folder) / f"{metric}_per_iteration.png",
                               f"{results['world']}: real {metric} of the agent trained in imagination", "loop iteration",
                               metric + (" %" if metric == "score" else ""), series))
    if rows and "success" in rows[-1] and "mean" not in rows[-1]["success"]:  # per achievement (Crafter)
        from worldsim.eval.crafter_score import success_plot

        agents = {"random": results["random"], "imagination": rows[-1]}
        paths.append(success_plot(Path(folder) / "success.png", agents))
    return paths


def evaluate_agent(world: str, agent: Any, seeds: list[int], max_steps: int, hold: int, size: int) -> dict[str, Any]:
    """Real-world score of an agent, one episode per seed: return (and in Crafter its score and per-achievement
    success), episodes, env_steps, and per-episode returns and lengths."""
    if world == "crafter":
        from worldsim.eval.crafter_score import evaluate_crafter

        return evaluate_crafter(agent, seeds, max_steps, hold, (size, size))
    from worldsim.envs import make_real_env
    from worldsim.eval.compare import mean_ci95
    from worldsim.eval.episodes import roll_real

    env = make_real_env(world, size=size)
    try:
        episodes = [roll_real(env, agent, max_steps, seed=s, hold=hold) for s in seeds]
    finally:
        env.close()
    returns, lengths = [float(e.reward.sum()) for e in episodes], [len(e.actions) for e in episodes]
    return {"return": mean_ci95(returns), "episodes": len(episodes), "env_steps": sum(lengths),
            "returns": returns, "lengths": lengths}


def _load_state(path: Path, cfg: ImagineConfig) -> dict[str, Any]:
    if not path.exists():
        return {"config": asdict(cfg), "iterations": []}
    state = json.loads(path.read_text())
    defaults = asdict(ImagineConfig())  # a field added since the loop started counts at its default
    changed = sorted(k for k, v in asdict(cfg).items()
                     if k not in RESUMABLE and state["config"].get(k, defaults[k]) != v)
    if changed:
        raise ValueError(f"{path.parent} holds a loop started with other settings ({', '.join(changed)}); resume it "
                         f"with the same ones (only {', '.join(RESUMABLE)} may change) or choose another out=")
    state["config"] = asdict(cfg)
    return state


def _store_size(store: Path) -> tuple[int, int]:
    """(episodes, frames) of the store; (0, 0) before it exists."""
    from worldsim.data.store import EpisodeStore

    if not store.exists():
        return 0, 0
    with EpisodeStore.open(store, "r") as s:
        return s.num_episodes, s.num_frames


def _collect(cfg: ImagineConfig, store: Path, size: int, episodes: int, agent: str | None) -> None:
    from worldsim.config import CollectConfig, EnvConfig
    from worldsim.data.collect import collect

    collect(CollectConfig(env=EnvConfig(name=cfg.world, size=size, max_episode_steps=cfg.max_episode_steps),
                          out=str(store), episodes=episodes, policy="actor_critic" if agent else "random",
                          policy_kwargs={"weights": agent} if agent else {}, vector="sync", num_envs=min(2, episodes),
                          seed=COLLECT_SEED + cfg.seed, progress=cfg.progress))


def _train_world_model(cfg: ImagineConfig, store: Path, start: Path, meta: dict[str, Any], run: Path, steps: int) -> Path:
    """Continue the DiT on the grown store: a warm start from the starting export the first time, then resumes."""
    from worldsim.demo import free_port
    from worldsim.diffusion.objective import ObjectiveConfig
    from worldsim.train.config import DistConfig, OptimConfig, TrainConfig
    from worldsim.train.context_sampling import ContextSamplingConfig
    from worldsim.train.trainer import train
    from worldsim.train.validation import ValidationConfig

    dit = meta["dit_config"]
    overrides = {key: dit[key] for key in DIT_ARCHITECTURE if key in dit and key not in ("reward_head", "termination_head")}
    resume = run.exists() and (run / "checkpoints").exists() and any((run / "checkpoints").iterdir())
    if not resume and run.exists():
        shutil.rmtree(run)
    result = train(TrainConfig(
        task="dit", data=str(store), vae=str(start), model="tiny", model_overrides=overrides,
        reward_head=bool(dit.get("reward_head")), termination_head=bool(dit.get("termination_head")),
        window=cfg.window, batch_size=cfg.batch_size, steps=steps, seed=cfg.seed, ema_decay=0.99,
        optim=OptimConfig(lr=cfg.lr, warmup_steps=min(20, max(1, cfg.world_model_steps // 4))),
        objective=ObjectiveConfig(context_noise_max=cfg.context_noise_max, reward_balance=cfg.reward_balance,
                                  heads_max_noise=cfg.heads_max_noise),
        context=ContextSamplingConfig(schemes=["autoregressive", "long-range", "hierarchical"]),
        validation=ValidationConfig(every=0), checkpoint_every=max(1, cfg.world_model_steps), keep_checkpoints=1,
        video_every=0, progress=cfg.progress, dist=DistConfig(port=free_port()),
        resume=str(run) if resume else None, run_dir=None if resume else str(run),
        init_from=None if resume else str(start)))
    if result.export_dir is None:
        raise RuntimeError(f"the world-model run in {run} wrote no export")
    return Path(result.export_dir)


def _train_reward_model(cfg: ImagineConfig, store: Path, path: Path, i: int) -> dict[str, Any]:
    """A frame reward model trained on the store's real transitions (`models.frame_heads`), saved to `path`."""
    from worldsim.models.frame_heads import save_frame_heads, train_frame_heads

    bar = _bar(cfg, cfg.reward_model_steps, "reward model")
    heads, report = train_frame_heads(store, steps=cfg.reward_model_steps, seed=cfg.seed + i,
                                      progress=lambda n: bar.update(n - bar.n))
    bar.close()
    save_frame_heads(path, heads, report)
    return {"weights": str(path), **report}


def _train_agent(cfg: ImagineConfig, export: str, store: Path, previous: str | None, path: Path, i: int,
                 reward_model: str | None = None) -> dict[str, Any]:
    from worldsim.agents.actor_critic import load_actor_critic, save_actor_critic
    from worldsim.agents.train_ac import ActorCriticConfig, train_actor_critic
    from worldsim.sim.vector_env import WorldModelVectorEnv

    net = load_actor_critic(previous)[0] if previous else None
    envs = WorldModelVectorEnv(cfg.num_envs, export, dataset=str(store), sampling_steps=cfg.sampling_steps,
                               context_frames=cfg.context_frames, max_episode_steps=cfg.imagination_horizon,
                               reward_model=reward_model)
    try:
        bar = _bar(cfg, cfg.agent_steps, "agent in imagination")
        agent = ActorCriticConfig(steps=cfg.agent_steps, seed=cfg.seed + i, epochs=cfg.agent_epochs,
                                  minibatches=cfg.agent_minibatches, entropy_coef=cfg.agent_entropy,
                                  unimix=cfg.agent_unimix)
        result = train_actor_critic(envs, agent, net, log=lambda row: bar.update(row["step"] - bar.n))
        bar.close()
    finally:
        envs.close()
    save_actor_critic(path, result.net, {"trained_in": "imagination", "simulator": export, "iteration": i + 1})
    returns = result.episode_returns
    return {"weights": str(path), "steps": result.steps, "seconds": result.seconds,
            "imagined_return": float(np.mean(returns[-50:])) if returns else None,
            "reward_per_step": float(np.mean([h["reward_per_step"] for h in result.history[-10:]]))}


def _bar(cfg: ImagineConfig, total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not cfg.progress, dynamic_ncols=True)


def _writer(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: the JSON keeps everything
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _scalars(writer: Any, name: str, result: dict[str, Any], step: int) -> None:
    if writer is None:
        return
    writer.add_scalar(f"real_return/{name}", result["return"]["mean"], step)
    if "score" in result:
        writer.add_scalar(f"real_score/{name}", result["score"]["mean"], step)
    writer.flush()


def _summary(result: dict[str, Any]) -> str:
    def one(x: dict[str, Any]) -> str:
        return f"{x['mean']:.2f} [{x['ci95'][0]:.2f}, {x['ci95'][1]:.2f}]"

    text = f"return {one(result['return'])}"
    return text + (f", score {one(result['score'])}%" if "score" in result else "")


def _results(cfg: ImagineConfig, state: dict[str, Any]) -> dict[str, Any]:
    """The latest result in the layout of docs/imagination/<world>.json."""
    done = [it for it in state["iterations"][:cfg.iterations] if "eval" in it]

    def agent(r: dict[str, Any]) -> dict[str, Any]:
        return {k: r[k] for k in ("score", "return", "success", "episodes", "env_steps") if k in r}

    collected = done[-1]["collect"]["frames"] if done else 0
    return {"world": cfg.world, "checkpoint": cfg.checkpoint, "random": agent(state["random"]),
            "imagination": {**agent(done[-1]["eval"]), "real_frames_in_store": collected,
                            "imagined_steps": sum(it["agent"]["steps"] for it in done)} if done else None,
            "per_iteration": [{"iteration": j + 1, **agent(it["eval"]), "agent": it["agent"], "world": it["world"],
                               "collect": it["collect"]} for j, it in enumerate(done)],
            "config": asdict(cfg)}
