"""Simulator step time of exported models side by side (batch 1 and a vector batch), same run, same machine.

    .venv/bin/python scripts/compare_step_cost.py old=worldsim/pretrained/probes new=runs/pretrained/probes-dit/export

Each model is stepped with random actions after a reset from a single frame of its real world
(`--world`); the first steps (warm-up) are not timed. Prints ms per env step and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import gymnasium
import numpy as np
import torch


def time_steps(checkpoint: str, world: str, num_envs: int, steps: int, sampling_steps: int) -> float:
    import worldsim  # noqa: F401  (registers the envs)

    env = gymnasium.make_vec("worldsim/WorldModel-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                             checkpoint=checkpoint, sampling_steps=sampling_steps)
    env.reset(seed=0, options={"real_env": world})
    rng = np.random.default_rng(0)
    n = env.single_action_space.n
    for _ in range(2):
        env.step(rng.integers(0, n, num_envs))
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, n, num_envs))
    env.close()
    return (time.perf_counter() - t0) / steps * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="LABEL=EXPORT_FOLDER")
    ap.add_argument("--world", default="probe")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sampling-steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench_results/step_cost.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for spec in args.models:
        label, _, path = spec.partition("=")
        for b in args.batches:
            ms = time_steps(path, args.world, b, args.steps, args.sampling_steps)
            rows.append({"model": label, "checkpoint": path, "num_envs": b, "ms_per_step": ms, "env_steps_per_s": 1000 * b / ms})
            print(f"{label:12s} batch {b:4d}: {ms:8.1f} ms per step, {1000 * b / ms:7.1f} env steps/s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "load_average": os.getloadavg(), "threads": args.threads}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
