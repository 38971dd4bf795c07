"""Minetest as a real world: start-up and reset time, frames/s against Crafter and the probe world, and the
real-vs-real floor (Minetest runs in real time, so the same seed and actions replay nearly, not exactly).

    .venv/bin/python scripts/bench_minetest.py [--seeds 4] [--steps 16] [--throughput-steps 100]

- throughput: random actions at 64x64 for each world, resets included (Minetest is paced by its fps).
- real vs real: per seed, reset(seed) and play a fixed random sequence of movement/turn/jump actions
  (no dig/place: they would change the world for the second run), then reset(seed) and play it again in
  the same game; PSNR/SSIM between the two runs' frames after 1, 4 and 16 steps.
- look away and back: reset(seed), turn left 180 degrees, turn right 180 degrees; PSNR/SSIM of the frame
  before against the frame after.
Prints a table and writes JSON.
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

import numpy as np  # noqa: E402

from worldsim.envs import make_real_env  # noqa: E402
from worldsim.envs.minetest.env import ACTION_NAMES, MinetestEnv  # noqa: E402
from worldsim.eval.compare import frame_scores  # noqa: E402

HORIZONS = (1, 4, 16)
MOVES = [ACTION_NAMES.index(a) for a in ACTION_NAMES if a not in ("dig", "place")]


def frames_per_s(env, steps: int) -> float:
    """Random actions through `env` (resets included), frames/s."""
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def play(env: MinetestEnv, seed: int, actions: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames ``(T + 1, H, W, 3)``, positions ``(T + 1, 3)`` and yaws ``(T + 1,)`` of reset(seed) then `actions`."""
    obs, info = env.reset(seed=seed)
    frames, states = [obs], [info["state"]]
    for a in actions:
        obs, _, _, _, info = env.step(a)
        frames.append(obs)
        states.append(info["state"])
    return np.stack(frames), np.stack([s["pos"] for s in states]), np.array([s["yaw"] for s in states])


def scores(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSNR, SSIM per frame pair of two ``(T, H, W, 3)`` runs."""
    p, s = frame_scores(a[None], b[None])
    return p[0], s[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--throughput-steps", type=int, default=100)
    ap.add_argument("--out", default="docs/bench/minetest.json")
    args = ap.parse_args()
    out = {"machine": f"{os.cpu_count()} CPUs", "load_before": os.getloadavg()[0], "size": 64}

    env = MinetestEnv(size=64, max_episode_steps=10_000)
    try:
        env.reset(seed=0)
        out["startup_s"] = env.start_seconds
        out["first_reset_s"] = env.reset_seconds  # start-up, mouse calibration and world generation included
        resets = []
        for seed in range(1, 1 + args.seeds):
            env.reset(seed=seed)
            resets.append(env.reset_seconds)
        out["reset_s_mean"], out["reset_s_max"] = float(np.mean(resets)), float(np.max(resets))
        out["fps_setting"] = env.fps
        out["frames_per_s"] = {"minetest": frames_per_s(env, args.throughput_steps)}

        per_h = {h: ([], [], [], []) for h in HORIZONS if h <= args.steps}  # psnr, ssim, |dpos|, |dyaw|
        for seed in range(args.seeds):
            actions = list(np.random.default_rng(seed).choice(MOVES, args.steps))
            (fa, pa, ya), (fb, pb, yb) = play(env, seed, actions), play(env, seed, actions)
            p, s = scores(fa, fb)
            for h, rows in per_h.items():
                for row, v in zip(rows, (p[h], s[h], np.linalg.norm(pa[h] - pb[h]), abs((ya[h] - yb[h] + 180) % 360 - 180))):
                    row.append(float(v))
        out["real_vs_real"] = {str(h): {"psnr": np.mean(p), "ssim": np.mean(s), "pos_diff_nodes": np.mean(d),
                                        "yaw_diff_deg": np.mean(y), "n": len(p)} for h, (p, s, d, y) in per_h.items()}

        half_turn = round(180 / env.turn_degrees)
        looks, yaw_err = ([], []), []
        for seed in range(args.seeds):
            before, info0 = env.reset(seed=seed)
            for a in ["turn_left"] * half_turn + ["turn_right"] * half_turn:
                after, _, _, _, info = env.step(ACTION_NAMES.index(a))
            p, s = scores(before[None], after[None])
            looks[0].append(p[0])
            looks[1].append(s[0])
            yaw_err.append(abs((info["state"]["yaw"] - info0["state"]["yaw"] + 180) % 360 - 180))
        out["look_away_and_back"] = {"turn_degrees": env.turn_degrees * half_turn, "psnr": float(np.mean(looks[0])),
                                     "ssim": float(np.mean(looks[1])), "yaw_error_deg": float(np.mean(yaw_err)),
                                     "n": args.seeds}
    finally:
        env.close()

    for name in ("crafter", "probe"):
        real = make_real_env(name, size=64)
        out["frames_per_s"][name] = frames_per_s(real, 10 * args.throughput_steps)
        real.close()
    out["load_after"] = os.getloadavg()[0]

    print(f"start-up {out['startup_s']:.1f} s, first reset {out['first_reset_s']:.1f} s, "
          f"reset {out['reset_s_mean']:.2f} s mean / {out['reset_s_max']:.2f} s max (load {out['load_before']:.1f})")
    print("| world | frames/s |\n|---|---|")
    for name, v in out["frames_per_s"].items():
        print(f"| {name} | {v:.1f} |")
    print("| real vs real, same seed and actions | PSNR dB | SSIM | position apart (nodes) | yaw apart (deg) |")
    print("|---|---|---|---|---|")
    for h, v in out["real_vs_real"].items():
        print(f"| after {h} steps | {v['psnr']:.2f} | {v['ssim']:.3f} | {v['pos_diff_nodes']:.3f} | {v['yaw_diff_deg']:.2f} |")
    look = out["look_away_and_back"]
    print(f"| look away {look['turn_degrees']:.0f} deg and back | {look['psnr']:.2f} | {look['ssim']:.3f} | | "
          f"{look['yaw_error_deg']:.2f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
