"""Stable-Baselines3 on the simulator: env steps/s through SB3, batched (`make_vec_env`) against SB3's DummyVecEnv.

    .venv/bin/python scripts/bench_sb3.py [--env worldsim/Probes-v0] [--num-envs 8] [--steps 64] [--ppo 512]

Random actions through each VecEnv (env steps/s, every sub-env counted), then a short PPO("CnnPolicy")
run on the batched one (SB3's own fps, learning included). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

import worldsim  # noqa: E402,F401
from worldsim.integrations.sb3 import make_vec_env  # noqa: E402


def steps_per_s(venv, steps: int) -> float:
    venv.reset()
    rng = np.random.default_rng(0)
    venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))
    return steps * venv.num_envs / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="worldsim/Probes-v0")
    ap.add_argument("--num-envs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--ppo", type=int, default=512, help="PPO timesteps (0: skip)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/bench/bench_sb3.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = {"env": args.env, "num_envs": args.num_envs, "threads": args.threads, "load_before": os.getloadavg()[0]}
    batched = make_vec_env(args.env, num_envs=args.num_envs)
    rows["batched_steps_per_s"] = steps_per_s(batched, args.steps)
    dummy = DummyVecEnv([lambda: gym.make(args.env) for _ in range(args.num_envs)])
    rows["dummy_steps_per_s"] = steps_per_s(dummy, max(4, args.steps // 4))
    dummy.close()
    if args.ppo:
        model = PPO("CnnPolicy", batched, n_steps=max(8, args.ppo // args.num_envs), batch_size=64, n_epochs=1,
                    seed=0, device="cpu", verbose=0)
        start = time.perf_counter()
        model.learn(args.ppo)
        rows["ppo_steps_per_s"] = model.num_timesteps / (time.perf_counter() - start)
    batched.close()
    rows["load_after"] = os.getloadavg()[0]
    print(f"{args.env}, {args.num_envs} sub-envs, {args.threads} threads (load {rows['load_before']:.2f})")
    print(f"  SB3 VecEnv over the batched simulator: {rows['batched_steps_per_s']:7.1f} env steps/s")
    print(f"  SB3 DummyVecEnv of single envs:        {rows['dummy_steps_per_s']:7.1f} env steps/s")
    if "ppo_steps_per_s" in rows:
        print(f"  PPO('CnnPolicy') learning, batched:    {rows['ppo_steps_per_s']:7.1f} env steps/s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
