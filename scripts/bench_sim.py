"""Benchmark the learned simulator: throughput per batch size, step time against horizon, cache speed-up, Crafter.

    .venv/bin/python scripts/bench_sim.py [--out bench_sim.json] [--batches 1 8 32 128] [--steps 4]

Models: the "small" autoencoder and DiT presets at 64x64 frames (latents 16x16x8, 64 tokens per
frame), freshly initialised (speed does not depend on training), exported and loaded through the
real export path. Step time at horizon H is measured on a track fast-forwarded to length H: the
frames the scheme selects at H are filled in (copies of context frames), which is exactly the work
a real rollout does at that horizon (the step only touches selected frames), without generating H
frames first. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import numpy as np
import torch
from gymnasium import spaces

from worldsim.models.ae_presets import autoencoder_config
from worldsim.models.autoencoder import VideoAutoencoder
from worldsim.models.presets import build_dit
from worldsim.sim.config import SimConfig
from worldsim.sim.simulator import Simulator
from worldsim.spaces import space_to_json
from worldsim.export import write_export

SIZE = 64


def export_small(folder: str) -> str:
    torch.manual_seed(0)
    ae = VideoAutoencoder(autoencoder_config("small"))
    ae.set_latent_stats(torch.zeros(8), torch.ones(8))
    space = space_to_json(spaces.Discrete(17))  # Crafter's actions
    dit = build_dit("small", latent_channels=8, action_space=space, action_substeps=2, reward_head=True, termination_head=True)
    write_export(folder, ae, dit, (SIZE, SIZE), space)
    return folder


def timed_steps(sim: Simulator, tracks, steps: int) -> float:
    """Mean seconds per batched step over `steps` steps (after one warm-up step)."""
    gens = [torch.Generator().manual_seed(i) for i in range(len(tracks))]
    actions = np.zeros((len(tracks), 1), dtype=np.int64)
    sim.step(tracks, actions, gens)
    start = time.perf_counter()
    for _ in range(steps):
        sim.step(tracks, actions, gens)
    return (time.perf_counter() - start) / steps


def fast_forward(sim: Simulator, track, horizon: int):
    """Give `track` length `horizon` with every frame the scheme selects there present (copies of frame 0)."""
    src = min(track.latents)
    for i in sim.scheme.select(horizon):
        track.latents[i], track.actions[i], track.masks[i] = track.latents[src], track.actions[src], track.masks[src]
        if track.keys:
            track.keys[i], track.values[i] = track.keys[src], track.values[src]
    track.length = horizon
    sim._prune(track)
    return track


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_sim.json")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--horizons", type=int, nargs="+", default=[16, 256, 1024])
    parser.add_argument("--steps", type=int, default=4, help="timed env steps per measurement")
    parser.add_argument("--sampling-steps", type=int, default=2)
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = export_small(tempfile.mkdtemp(prefix="bench_sim_"))
    context = np.random.default_rng(0).integers(0, 256, (7, SIZE, SIZE, 3), dtype=np.uint8)
    base = dict(sampling_steps=args.sampling_steps, context_budget=args.budget, device=args.device, context_frames=4)
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} torch threads, device {args.device}",
                     "config": {**base, "preset": "small/small", "frame": SIZE, "k": 2}, "throughput": [], "horizon": [],
                     "cache": {}, "crafter": {}}

    sim = Simulator(folder, SimConfig(**base))
    print("\nbatch  env steps/s  frames/s  s/step")
    for b in args.batches:
        tracks = [sim.start(context) for _ in range(b)]
        t = timed_steps(sim, tracks, max(1, args.steps if b <= 32 else args.steps // 2))
        row = {"batch": b, "steps_per_s": b / t, "frames_per_s": b * sim.k / t, "seconds_per_step": t}
        results["throughput"].append(row)
        print(f"{b:5d}  {row['steps_per_s']:11.1f}  {row['frames_per_s']:8.1f}  {t:6.3f}")
    sim.close()

    print("\nscheme          horizon  ms/step  (batch 1, cache incremental)")
    for scheme in ("autoregressive", "long-range", "hierarchical"):
        sim = Simulator(folder, SimConfig(**base, context=scheme))
        for h in args.horizons:
            track = fast_forward(sim, sim.start(context), h)
            t = timed_steps(sim, [track], args.steps)
            results["horizon"].append({"scheme": scheme, "horizon": h, "ms_per_step": 1000 * t})
            print(f"{scheme:15s} {h:7d}  {1000 * t:7.1f}")
        sim.close()

    print("\ncache         ms/step at horizon 256 (long-range, batch 1)")
    for mode in ("incremental", "recompute"):
        sim = Simulator(folder, SimConfig(**base, context="long-range", cache=mode))
        track = fast_forward(sim, sim.start(context), 256)
        results["cache"][mode] = 1000 * timed_steps(sim, [track], args.steps)
        print(f"{mode:12s}  {results['cache'][mode]:.1f}")
        sim.close()
    results["cache"]["speedup"] = results["cache"]["recompute"] / results["cache"]["incremental"]
    print(f"speed-up of the cache: {results['cache']['speedup']:.2f}x")

    try:
        from worldsim.envs import make_real_env

        env = make_real_env("crafter", size=SIZE)
        env.reset(seed=0)
        env.action_space.seed(0)
        n, start = 300, time.perf_counter()
        for _ in range(n):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
        fps = n / (time.perf_counter() - start)
        results["crafter"] = {"frames_per_s": fps}
        best = max(r["frames_per_s"] for r in results["throughput"])
        print(f"\nreal Crafter: {fps:.0f} frames/s; simulator at its best batch: {best:.1f} frames/s ({best / fps:.3f}x)")
    except Exception as e:  # the benchmark still reports the simulator without Crafter
        results["crafter"] = {"error": str(e)}
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
