"""Which balls a probe-world simulator keeps: the share of fully visible balls it draws, by radius and latent step.

    .venv/bin/python scripts/probe_ball_size.py worldsim/pretrained/probes --first-seed 100000 --episodes 24 \
        --out docs/bench/probes_ball_size.json

Random scenarios of the probe suite (`worldsim.eval.probe_suite`), rolled by the simulator from the evaluation's
real context (4 latent frames, autoregressive, budget 8) with the real episode's actions. A ball counts as drawn
where the probe detector sees it (`worldsim.eval.probes.detect_balls`: 30% of its disc in its colour), at every
frame in which it is fully visible in the real world. Balls hidden at the last context frame are counted apart.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from worldsim.eval.probe_suite import ProbeSuiteConfig, real_probe_episodes  # noqa: E402
from worldsim.eval.probes import ProbeScoreConfig, detect_balls, fully_visible  # noqa: E402
from worldsim.eval.simulated import SimRunner  # noqa: E402
from worldsim.sim.config import SimConfig  # noqa: E402

RADII = (0.0, 3.8, 4.4, 5.0, 99.0)  # pixels in a 64-pixel frame
STEPS = ((1, 2), (3, 4), (5, 8), (9, 16))  # latent steps after the context


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export")
    ap.add_argument("--first-seed", type=int, default=100_000)
    ap.add_argument("--episodes", type=int, default=24)
    ap.add_argument("--sampling-steps", type=int, default=1)
    ap.add_argument("--reencode", choices=("served", "true", "false"), default="served")
    ap.add_argument("--out", type=Path, default=Path("runs/probes_ball_size.json"))
    args = ap.parse_args()
    reencode = None if args.reencode == "served" else args.reencode == "true"
    runner = SimRunner(args.export, SimConfig(context="autoregressive", context_frames=4, context_budget=8,
                                              sampling_steps=args.sampling_steps, reencode=reencode), num_envs=8)
    k, context, steps = runner.k, runner.context_rows, STEPS[-1][1]
    cfg = ProbeSuiteConfig(families=("random",), seeds=args.episodes, steps=context - 1 + steps * k, size=64,
                           context=context, hold=k, first_seed=args.first_seed)
    episodes = real_probe_episodes(cfg)
    sim = runner.rollout([pe.episode.frames[:context] for pe in episodes],
                         [pe.episode.actions[:context - 1] for pe in episodes],
                         [[pe.episode.actions[context - 1 + j * k] for j in range(steps)] for pe in episodes])
    score = ProbeScoreConfig()
    rows = []  # radius px, latent step, visible at the last context frame, drawn
    for pe, frames in zip(episodes, sim):
        frames = np.concatenate([pe.episode.frames[:context], frames])
        state = pe.episode.state
        det = detect_balls(frames, state, score)
        present = np.asarray(state["present"][0], bool)
        must = fully_visible(state, score)
        radius = state["radius"][0][present] / score.box[1] * frames.shape[1]
        for t in range(context, len(frames)):
            for b in np.flatnonzero(must[t]):
                rows.append((radius[b], (t - context) // k + 1, must[context - 1, b], det.seen[t, b]))
    a = np.array(rows, dtype=float)
    table = []
    print(f"{args.export}, seeds from {args.first_seed}, {args.episodes} random scenes: share of fully visible balls drawn")
    print("radius (px)   " + "  ".join(f"steps {s0}-{s1}" for s0, s1 in STEPS) + "   (ball-frames)")
    for lo, hi in zip(RADII[:-1], RADII[1:]):
        sel = (a[:, 0] >= lo) & (a[:, 0] < hi) & (a[:, 2] == 1)
        shares = []
        for s0, s1 in STEPS:
            m = sel & (a[:, 1] >= s0) & (a[:, 1] <= s1)
            shares.append(float(a[m, 3].mean()) if m.any() else None)
        table.append({"radius_px": [lo, hi], "drawn": shares, "ball_frames": int(sel.sum())})
        print(f"{lo:4.1f}-{min(hi, 9.9):4.1f}     " + "  ".join(f"{'-' if v is None else f'{v:.2f}':>9s}" for v in shares)
              + f"   ({int(sel.sum())})")
    hidden = a[:, 2] == 0
    later = float(a[hidden, 3].mean()) if hidden.any() else None
    print(f"hidden at the last context frame, drawn once fully visible: {later if later is None else round(later, 2)} "
          f"({int(hidden.sum())} ball-frames)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "steps": STEPS,
                                    "by_radius": table, "hidden_at_context_end": later}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
