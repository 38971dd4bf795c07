"""What a perfect simulator scores on the probe suite when it does not know one hidden number.

    .venv/bin/python scripts/probe_oracle.py --first-seeds 100000 200000 --out docs/bench/probe_oracle.json

The "simulator" here is the real probe world itself: from the first generated frame of an evaluation
(`--context` real frames before it, as `worldsim eval` gives Probes-v0) it steps the same scenario
with the same actions, exactly, except that the walls' and floor's restitution is set to one constant
(`--restitution`) instead of the episode's own, which fall_bounce draws from
`FALL_BOUNCE_RESTITUTION` and frames before the first floor hit cannot show. Its frames are scored as
a simulator's are (`worldsim.eval.probe_suite.score_suite`): fall_bounce both strictly (against the
true trajectory only) and as the suite scores it now (against the trajectories of every restitution
of the range).

Then PSNR at 1 / 4 / 16 latent steps against the real frames, on the episodes `worldsim eval` compares
(`--psnr-seeds` seeds from each first seed, random scenarios and random actions): of the same constant
restitutions, and of the mean frame over the scenarios' whole range (0.6-0.95), the best a predictor
that does not know the restitution can do for squared error (it does not read the restitution off
bounces in the context either). Prints tables and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from worldsim import envs  # noqa: E402
from worldsim.eval.compare import per_horizon  # noqa: E402
from worldsim.eval.paired import paired_rollouts  # noqa: E402
from worldsim.eval.probe_suite import (ProbeSuiteConfig, real_probe_episodes, replay_with_restitution,  # noqa: E402
                                      score_suite)


def oracle_frames(episode, context: int, restitution: float, size: int) -> np.ndarray:
    """The probe episode's scenario and actions stepped exactly, with `restitution` from frame `context` on."""
    return replay(dict(options={"family": episode.family, "scenario_seed": episode.seed}), episode.episode.actions,
                  context, restitution, size)


def replay(reset: dict, actions: list, context: int, restitution: float, size: int) -> np.ndarray:
    """(T + 1, H, W, 3): the probe world reset with `reset` and stepped with `actions`, exactly, but with
    `restitution` from frame `context` on."""
    env = envs.make_real_env("probe", size=size, max_episode_steps=len(actions))
    try:
        return replay_with_restitution(env, reset, actions, context, restitution)[0]
    finally:
        env.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--first-seeds", type=int, nargs="+", default=[100_000, 200_000])
    ap.add_argument("--seeds", type=int, default=10, help="scenario seeds per family")
    ap.add_argument("--restitution", type=float, nargs="+", default=[0.7, 0.75, 0.8])
    ap.add_argument("--context", type=int, default=7, help="real frames before the first generated one")
    ap.add_argument("--latent-steps", type=int, default=16, help="generated latent steps (probe_steps)")
    ap.add_argument("--k", type=int, default=2, help="frames per latent step")
    ap.add_argument("--psnr-seeds", type=int, default=16, help="episodes per first seed for PSNR")
    ap.add_argument("--out", type=Path, default=Path("runs/probe_oracle.json"))
    args = ap.parse_args()
    start = time.perf_counter()
    rows = []
    print(f"{'seeds':>8s} {'restitution':>11s} {'identity':>9s} {'permanence':>10s} {'fall (strict)':>13s} "
          f"{'fall (range)':>12s} {'collision':>9s} {'push':>5s}")
    for first in args.first_seeds:
        cfg = ProbeSuiteConfig(seeds=args.seeds, steps=args.context - 1 + args.latent_steps * args.k, size=64,
                               context=args.context, hold=args.k, first_seed=first)
        episodes = real_probe_episodes(cfg)
        for e in args.restitution:
            scored = score_suite(episodes, cfg, [oracle_frames(pe, args.context, e, cfg.size) for pe in episodes])
            summary = {c: f"{s['passed']}/{s['scored']}" for c, s in scored["summary"].items()}
            strict = scored["fall_bounce_strict"]
            row = {"first_seed": first, "restitution": e, "summary": summary,
                   "fall_bounce_strict": f"{strict['passed']}/{strict['scored']}",
                   "fall_bounce_error_px": scored["fall_bounce_error_px"]}
            rows.append(row)
            print(f"{first:8d} {e:11.2f} {summary['identity']:>9s} {summary['permanence']:>10s} "
                  f"{row['fall_bounce_strict']:>13s} {summary['fall_bounce']:>12s} {summary['collision']:>9s} "
                  f"{summary['push']:>5s}")
    psnr_rows = []
    print(f"\n{'seeds':>8s} {'restitution':>11s}  PSNR at 1 / 4 / 16 latent steps (dB)")
    for first in args.first_seeds:
        p = paired_rollouts("probe", list(range(first, first + args.psnr_seeds)), args.latent_steps, k=args.k,
                            context=args.context, size=64, replace_short=True)

        def guessed(e: float) -> np.ndarray:
            return np.stack([replay(dict(seed=seed), ep.actions, args.context, e, 64)[args.context:][:p.real.shape[1]]
                             for seed, ep in zip(p.seeds, p.episodes)])

        mean = np.mean([guessed(e).astype(np.float64) for e in np.linspace(0.6, 0.95, 15)], axis=0)
        for name, frames in [*((f"{e:.2f}", guessed(e)) for e in args.restitution),
                             ("range mean", np.clip(np.round(mean), 0, 255).astype(np.uint8))]:
            psnr = [h["mean"] for h in per_horizon(p.real, frames, k=args.k, horizons=(1, 4, args.latent_steps))["psnr"]]
            psnr_rows.append({"first_seed": first, "restitution": name, "psnr": psnr})
            print(f"{first:8d} {name:>11s}  " + " / ".join(f"{v:.2f}" for v in psnr))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"what": __doc__.strip().splitlines()[0], "args": {k: str(v) if isinstance(v, Path)
                                    else v for k, v in vars(args).items()},
                                    "seconds": time.perf_counter() - start, "rows": rows, "psnr": psnr_rows}, indent=1))
    print(f"wrote {args.out} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
