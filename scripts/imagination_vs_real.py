"""Train the actor-critic in imagination (the learned simulator) and in the real world, compare in the real world.

    .venv/bin/python scripts/imagination_vs_real.py --checkpoint worldsim/pretrained/crafter --steps 4096

1. `--steps` agent steps inside the simulator (`WorldModelVectorEnv`: learned reward and termination;
   every imagined episode starts from real context frames and lasts `--imagination-horizon` steps, as in
   DIAMOND), then the same number of steps in the real world with each action held for the model's k
   frames (one simulator step = k real frames), so both agents make the same number of decisions.
2. Both agents and a random agent (also holding actions k frames) play `--eval-seeds` real episodes
   (at most `--eval-frames` frames each); the table shows the mean real return with a 95% interval
   (Student t over seeds) and, in Crafter, Crafter's own score (geometric mean of the achievement
   success rates, bootstrap interval); JSON goes to `--out` with the training curves and the weights'
   paths, and `--docs-json` writes the summary layout of docs/imagination/<world>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldsim.agents.actor_critic import ActorCriticAgent, load_actor_critic, save_actor_critic
from worldsim.agents.random import RandomAgent
from worldsim.agents.train_ac import ActorCriticConfig, TrainResult, real_vector_env, train_actor_critic
from worldsim.envs import make_real_env, real_env_name
from worldsim.eval.compare import mean_ci95
from worldsim.eval.probes import wilson_interval
from worldsim.imagine import evaluate_agent
from worldsim.sim.vector_env import WorldModelVectorEnv
from worldsim.export import read_export_config

def world_of(meta: dict[str, Any], checkpoint: Path) -> str | None:
    """The real world a simulator imitates: the pretrained registry's, else its training store's env."""
    from worldsim.pretrained import PRETRAINED

    for p in PRETRAINED.values():
        if p.path.resolve() == checkpoint.resolve():
            return p.real_env
    store = (meta.get("train") or {}).get("data")
    if store and Path(store).exists():
        from worldsim.data.store import EpisodeStore

        with EpisodeStore.open(store) as s:
            return real_env_name(s.env_id)
    return None


def summarise(result: TrainResult) -> dict[str, Any]:
    tail = result.history[-max(1, len(result.history) // 5):]
    return {"steps": result.steps, "seconds": result.seconds, "episodes": len(result.episode_returns),
            "mean_episode_return_last_20": float(np.mean(result.episode_returns[-20:])) if result.episode_returns else None,
            "reward_per_step_last_fifth": float(np.mean([h["reward_per_step"] for h in tail])),
            "history": result.history}


def train_both(args: argparse.Namespace, cfg: ActorCriticConfig, checkpoint: Path, world: str, dataset: str | None,
               store_frames: int | None, out: Path, log: Any) -> tuple[int, tuple[int, int], dict[str, Any], dict[str, Any]]:
    """Train the agent in imagination, then one in the real world at the simulator's real budget; save both.

    Returns (k, frame size, the two networks, their training summaries).
    """
    sim = WorldModelVectorEnv(args.num_envs, checkpoint, dataset=dataset, real_env=None if dataset else world,
                              sampling_steps=args.sampling_steps, context_frames=args.context_frames,
                              max_episode_steps=args.imagination_horizon, reward_model=args.reward_model)
    k, size = sim.sim.k, sim.sim.frame_size
    print(f"imagination: {checkpoint} (k={k}, {size[0]}x{size[1]}), context from "
          f"{dataset or 'the live ' + world + ' world'}; {args.steps} steps", flush=True)
    imagined = train_actor_critic(sim, cfg, log=log("imagination"))
    sim.close()
    save_actor_critic(out / "imagination.safetensors", imagined.net, {"trained_in": "imagination", "steps": imagined.steps,
                                                                     "checkpoint": str(checkpoint)})

    # The real-world agent gets the real-world budget behind the simulator: the frames of its training store
    # (what DIAMOND's Atari 100k comparison holds equal), in decisions of k frames; --real-steps overrides.
    real_steps = args.real_steps or (-(-store_frames // k) if store_frames else args.steps)
    print(f"real: {world}, actions held {k} frames; {real_steps} steps ({real_steps * k} real frames)", flush=True)
    real_envs = real_vector_env(world, args.num_envs, hold=k, size=size)
    real = train_actor_critic(real_envs, ActorCriticConfig(**{**cfg.__dict__, "steps": real_steps}), log=log("real"))
    real_envs.close()
    save_actor_critic(out / "real.safetensors", real.net, {"trained_in": world, "steps": real.steps})

    return k, size, {"imagination": imagined.net, "real": real.net}, {"imagination": summarise(imagined),
                                                                      "real": summarise(real)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="worldsim/pretrained/crafter", help="simulator export folder")
    p.add_argument("--world", default=None, help="real world name (default: the one the export imitates)")
    p.add_argument("--dataset", default=None, help="store for imagined episodes' context (default: the export's "
                   "training store if present, else frames from the live real world)")
    p.add_argument("--steps", type=int, default=4096, help="agent steps of training, in each world")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--horizon", type=int, default=16, help="steps per sub-env between updates")
    p.add_argument("--imagination-horizon", type=int, default=15, help="steps of each imagined episode")
    p.add_argument("--sampling-steps", type=int, default=2, help="denoising steps per simulator step")
    p.add_argument("--context-frames", type=int, default=2, help="latent frames of context at each imagined reset")
    p.add_argument("--reward-model", default=None,
                   help="frame reward model (.safetensors, worldsim.models.frame_heads) instead of the DiT's heads")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--entropy-coef", type=float, default=0.001)
    p.add_argument("--epochs", type=int, default=1, help="passes over each rollout: 1 is A2C, > 1 PPO's clipped objective")
    p.add_argument("--minibatches", type=int, default=1, help="gradient steps per pass (with --epochs > 1)")
    p.add_argument("--unimix", type=float, default=0.0,
                   help="share of the uniform policy mixed into the agent's (DreamerV3's unimix, which uses 0.01)")
    p.add_argument("--normalize-advantages", action=argparse.BooleanOptionalAction, default=True,
                   help="scale each batch's advantages to unit std")
    p.add_argument("--eval-seeds", type=int, default=100,
                   help="real evaluation episodes per agent (20 gave intervals too wide to separate Crafter agents)")
    p.add_argument("--eval-frames", type=int, default=500, help="real frames per evaluation episode at most")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/imagination_vs_real", help="folder for JSON and weights")
    p.add_argument("--real-steps", type=int, default=None, help="steps of the real-world agent (default: the "
                   "simulator's training-store frames / k, the same real-world budget)")
    p.add_argument("--rescore", action="store_true", help="train nothing: score the agents of an earlier run in "
                   "--out (its imagination.safetensors, real.safetensors and results.json) on the evaluation seeds")
    p.add_argument("--first-eval-seed", type=int, default=None, help="first real evaluation seed (default: "
                   "10000 + 1000 * seed)")
    p.add_argument("--docs-json", default=None, help="also write the summary here (e.g. docs/imagination/crafter.json)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    checkpoint = Path(args.checkpoint)
    meta = read_export_config(checkpoint)
    world = args.world or world_of(meta, checkpoint)
    if world is None:
        raise SystemExit(f"cannot tell which real world {checkpoint} imitates; pass --world")
    dataset = args.dataset
    if dataset is None:
        store = (meta.get("train") or {}).get("data")
        dataset = store if store and Path(store).exists() else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = ActorCriticConfig(steps=args.steps, horizon=args.horizon, lr=args.lr, entropy_coef=args.entropy_coef,
                            normalize_advantages=args.normalize_advantages, seed=args.seed, epochs=args.epochs,
                            minibatches=args.minibatches, unimix=args.unimix)

    def log(name: str):
        every = max(1, -(-args.steps // (args.horizon * args.num_envs)) // 10)

        def f(row: dict[str, float]) -> None:
            if row["update"] % every == 0:
                print(f"  [{name}] step {row['step']:>7}  loss {row['loss']:+.3f}  value {row['value_loss']:.3f}  "
                      f"entropy {row['entropy']:.2f}  reward/step {row['reward_per_step']:+.4f}", flush=True)
        return f

    store_frames = None
    if dataset:
        from worldsim.data.store import EpisodeStore

        with EpisodeStore.open(dataset) as s:
            store_frames = s.num_frames
    previous = None
    if args.rescore:  # the agents of an earlier run in --out, scored again (e.g. on more or fresh seeds)
        if not (out / "results.json").exists():
            raise SystemExit(f"--rescore: no earlier run in {out} (no results.json there)")
        previous = json.loads((out / "results.json").read_text())
        k, size = previous["k"], tuple(previous["frame_size"])
        nets = {name: load_actor_critic(out / f"{name}.safetensors")[0] for name in ("imagination", "real")}
        trained = {name: previous["agents"][name]["training"] for name in nets}
        print(f"re-scoring the agents in {out} (trained {trained['imagination']['steps']} imagined and "
              f"{trained['real']['steps']} real steps)", flush=True)
    else:
        k, size, nets, trained = train_both(args, cfg, checkpoint, world, dataset, store_frames, out, log)

    first = 10_000 + args.seed * 1000 if args.first_eval_seed is None else args.first_eval_seed
    seeds = [first + i for i in range(args.eval_seeds)]
    space = make_real_env(world, size=size).action_space
    agents = {"random": (RandomAgent(space, 1, seed=args.seed), None),
              **{name: (ActorCriticAgent(net, space, 1, seed=args.seed), trained[name]) for name, net in nets.items()}}
    rows: dict[str, Any] = {}
    for name, (agent, training) in agents.items():
        t0 = time.perf_counter()
        scored = evaluate_agent(world, agent, seeds, args.eval_frames, k, size[0])
        returns, lengths = scored["returns"], scored["lengths"]
        rows[name] = {"real_return": {**mean_ci95(returns), "n": len(returns)}, "returns": returns,
                      "episode_frames": lengths, "mean_episode_frames": float(np.mean(lengths)),
                      "eval_seconds": time.perf_counter() - t0,
                      "training": training}
        if "score" in scored:
            rows[name]["score"], rows[name]["success"] = scored["score"], scored["success"]
        elif world == "probe-push":  # the task pays 1 on success and ends: success is a return above 0
            wins = sum(r > 0 for r in returns)
            rows[name]["success"] = {"mean": wins / len(returns), "ci95": list(wilson_interval(wins, len(returns))),
                                     "episodes_won": wins}

    print(f"\n{world} real-world return over {len(seeds)} seeds (<= {args.eval_frames} frames, actions held {k} frames)")
    print(f"{'agent':<22} {'train steps':>11} {'train s':>8} {'ep. frames':>10} {'mean return':>11}   95% interval"
          + ("   score %   95% interval" if world == "crafter" else ""))
    labels = {"random": "random", "imagination": "AC in imagination", "real": "AC in real world"}
    for name, row in rows.items():
        r, t = row["real_return"], row["training"]
        line = (f"{labels[name]:<22} {t['steps'] if t else 0:>11} {t['seconds'] if t else 0:>8.0f} "
                f"{row['mean_episode_frames']:>10.0f} {r['mean']:>11.2f}   [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]")
        if "score" in row:
            sc = row["score"]
            line += f"   {sc['mean']:>7.2f}   [{sc['ci95'][0]:.2f}, {sc['ci95'][1]:.2f}]"
        if world == "probe-push":
            sc = row["success"]
            line += f"   success {sc['mean']:.2f} [{sc['ci95'][0]:.2f}, {sc['ci95'][1]:.2f}]"
        print(line)
    # A rescoring keeps the training run's arguments and agent config; its own arguments go beside them.
    run = ({"args": previous["args"], "config": previous["config"], "rescored_with": vars(args)} if args.rescore
           else {"args": vars(args), "config": {**cfg.__dict__, "channels": list(cfg.channels)}})
    report = {"checkpoint": str(checkpoint), "world": world, "dataset": dataset, "k": k, "frame_size": list(size),
              **run, "eval_seeds": seeds,
              "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(),
                          "cuda": torch.cuda.is_available()},
              "agents": rows}
    (out / "results.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out / 'results.json'}")
    plots = [out / "success.png"] + ([Path(args.docs_json).with_name(Path(args.docs_json).stem + "_success.png")]
                                     if args.docs_json else [])
    if world == "crafter":
        from worldsim.eval.crafter_score import success_plot

        for path in plots:
            path.parent.mkdir(parents=True, exist_ok=True)
            success_plot(path, {name: {"success": row["success"], "episodes": len(row["returns"])}
                                for name, row in rows.items()},
                         f"Crafter, {len(seeds)} real episodes: achievement success by agent")
            print(f"wrote {path}")
    if args.docs_json:
        summary = {"world": world, "checkpoint": str(checkpoint), "reward_model": args.reward_model,
                   "machine": report["machine"], "eval_seeds": seeds, "agent_config": report["config"],
                   **{name: {**({"score": {"mean": row["score"]["mean"], "ci95": row["score"]["ci95"]}} if "score" in row else {}),
                             **({"success": row["success"]} if "success" in row else {}),
                             "return": {"mean": row["real_return"]["mean"], "ci95": row["real_return"]["ci95"]},
                             "episodes": len(row["returns"]),
                             "env_steps": {"random": 0, "imagination": store_frames, "real": trained["real"]["steps"] * k}[name],
                             "imagined_steps": trained["imagination"]["steps"] if name == "imagination" else 0,
                             "eval_env_steps": int(sum(row["episode_frames"]))}
                      for name, row in rows.items()}}
        Path(args.docs_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.docs_json).write_text(json.dumps(summary, indent=1))
        print(f"wrote {args.docs_json}")


if __name__ == "__main__":
    main()
