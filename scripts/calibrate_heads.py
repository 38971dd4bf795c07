"""The reward and termination heads of a simulator against the real world, on held-out real episodes.

    .venv/bin/python scripts/calibrate_heads.py --checkpoint worldsim/pretrained/crafter \
        --store runs/pretrained/crafter.zarr --out docs/imagination/crafter_heads.json

Prints the reward's reliability (predicted mean per real value), its per-action bias (what a policy
trained in imagination would exploit) and the termination head's rates; writes the full report as JSON
(`worldsim.eval.calibration`). Default episodes: the ones training holds out by default.

With `--held-actions H` it also plays each action held for H decisions, and a random policy, in
imagination and in the real world, and prints both returns (`worldsim.eval.held_actions`): the bias
as an agent trained in imagination meets it, on generated frames rather than real ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from worldsim.data.store import EpisodeStore
from worldsim.eval.calibration import calibrate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="DiT export folder")
    p.add_argument("--store", required=True, help="episode store of the real world the export imitates")
    p.add_argument("--episodes", type=int, nargs="*", default=None, help="episode indices (default: held-out ones)")
    p.add_argument("--out", default=None, help="JSON report path")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--held-actions", type=int, default=0, metavar="H",
                   help="also compare imagined and real returns of each action held H decisions (0: skip)")
    p.add_argument("--num-envs", type=int, default=32, help="imagined episodes per held action")
    p.add_argument("--real-episodes", type=int, default=32, help="real episodes per held action")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = None
    with EpisodeStore.open(args.store, "r") as store:
        if "Crafter" in store.env_id:
            try:
                import crafter

                names = list(crafter.constants.actions)
            except ImportError:
                pass
    r = calibrate(args.checkpoint, args.store, args.episodes, names)
    print(f"{args.checkpoint} on {len(r['episodes'])} held-out episodes of {args.store}: {r['frames']} latent frames")
    if "reward" in r:
        rw = r["reward"]
        corr = "n/a" if rw["correlation"] is None else f"{rw['correlation']:.2f}"
        print(f"reward: real mean {rw['real_mean']:+.4f}, predicted {rw['predicted_mean']:+.4f}, mse {rw['mse']:.4f}, "
              f"correlation {corr}")
        print(f"  {'real value':>10} {'frames':>7} {'predicted':>10}")
        for value, b in rw["by_real_value"].items():
            print(f"  {value:>10} {b['frames']:>7} {b['predicted']:>+10.3f}")
        print(f"  {'action':>16} {'frames':>7} {'real':>8} {'predicted':>10}")
        for name, b in rw["by_action"].items():
            print(f"  {name:>16} {b['frames']:>7} {b['real']:>+8.3f} {b['predicted']:>+10.3f}")
    if "termination" in r:
        t = r["termination"]
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"termination: real rate {t['real_rate']:.4f}, predicted {t['predicted_rate']:.4f}, "
              f"precision {fmt(t['precision'])}, recall {fmt(t['recall'])}")
    if args.held_actions:
        r["held_actions"] = held_actions(args, names)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(r, indent=1))
        print(f"wrote {args.out}")


def held_actions(args: argparse.Namespace, names: list[str] | None) -> dict:
    """`worldsim.eval.held_actions` on the export, its store's context and the real world it imitates."""
    from worldsim.agents.train_ac import HoldAction
    from worldsim.envs import make_real_env, real_env_name
    from worldsim.eval.held_actions import held_action_report
    from worldsim.sim.vector_env import WorldModelVectorEnv

    with EpisodeStore.open(args.store, "r") as store:
        world = real_env_name(store.env_id)
        size = store.frame_size
    if world is None:
        raise SystemExit(f"{args.store} records {store.env_id}, not a real world that runs here")
    envs = WorldModelVectorEnv(args.num_envs, args.checkpoint, dataset=args.store, sampling_steps=1,
                               max_episode_steps=args.held_actions)
    env = HoldAction(make_real_env(world, size=size), hold=envs.sim.k)
    try:
        r = held_action_report(envs, env, args.held_actions, args.real_episodes, action_names=names,
                               progress=lambda name: print(f"  held action: {name}", flush=True))
    finally:
        envs.close()
        env.close()
    print(f"held actions, {args.held_actions} decisions of k={envs.sim.k} frames: imagined against real return "
          f"(imagined mean per step {r['imagined_mean_per_step']:+.4f})")
    print(f"  {'script':>16} {'imagined':>9} {'95% interval':>16} {'real':>8} {'95% interval':>16} {'ended: im / real':>17}")
    for name, row in r["scripts"].items():
        im, re = row["imagined"], row["real"]
        real = (f"{re['return']['mean']:>+8.3f} [{re['return']['ci95'][0]:+.2f}, {re['return']['ci95'][1]:+.2f}]"
                if re["return"] else f"{'n/a':>8} {'':>16}")
        print(f"  {name:>16} {im['return']['mean']:>+9.3f} [{im['return']['ci95'][0]:+.2f}, {im['return']['ci95'][1]:+.2f}] "
              f"{real} {im['terminated']:>8.2f} / {re['terminated'] if re['terminated'] is not None else float('nan'):.2f}")
    return r


if __name__ == "__main__":
    main()
