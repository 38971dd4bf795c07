"""Benchmark the data path: recording overhead of collection, and window-sampler throughput.

    .venv/bin/python scripts/bench_data.py [--out bench_results/data.json] [--quick]

1. Collection: `worldsim.data.collect.collect` against the same vector env stepped with the same
   policy and the same per-episode resets but nothing recorded. Target: recording costs < 10%.
2. Window sampler: random windows of 16 frames at 64x64 from a Crafter store, read through
   `WindowDataset` directly and through a DataLoader with 2 workers, in frames/s. Compared with
   what training consumes: frames/s of a forward+backward pass of the small autoencoder and DiT
   presets on this machine (target: the sampler delivers at least 20x that).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from worldsim import envs
from worldsim.agents import make_policy
from worldsim.cli import compose
from worldsim.data.collect import collect, env_kwargs
from worldsim.data.dataset import WindowDataset


def step_only(cfg, steps: int) -> float:
    """Steps/s of the collector's loop (same vector env, policy, per-episode reseeding) with no recording."""
    kwargs = env_kwargs(cfg)
    n = cfg.num_envs
    cls = AsyncVectorEnv if cfg.vector == "async" and n > 1 else SyncVectorEnv
    vec = cls([partial(envs.make_real_env, cfg.env.name, **kwargs)] * n, autoreset_mode=AutoresetMode.DISABLED)
    agent = make_policy(cfg.policy, vec.single_action_space, n, seed=cfg.seed)
    next_seed = cfg.seed + n
    seeds = list(range(cfg.seed, cfg.seed + n))
    obs, _ = vec.reset(seed=seeds)
    agent.reset(np.ones(n, bool), seeds)
    start, done_steps = time.perf_counter(), 0
    while done_steps < steps:
        obs, _, term, trunc, _ = vec.step(agent.act(obs))
        done_steps += n
        done = term | trunc
        if done.any():
            seeds = [None] * n
            for i in np.flatnonzero(done):
                seeds[i], next_seed = next_seed, next_seed + 1
            obs, _ = vec.reset(seed=seeds, options={"reset_mask": done.copy()})
            agent.reset(done, seeds)
    seconds = time.perf_counter() - start
    vec.close()
    return done_steps / seconds


def bench_collection(tmp: Path, world: str, num_envs: int, vector: str, episodes: int, max_steps: int) -> dict:
    out = tmp / f"collect-{world}-{num_envs}-{vector}.zarr"
    cfg = compose("collect", [f"out={out}", f"env={world}", f"episodes={episodes}", f"num_envs={num_envs}",
                              f"vector={vector}", f"env.max_episode_steps={max_steps}", "progress=false"])
    result = collect(cfg)
    recorded = result.steps / result.seconds
    bare = step_only(cfg, result.steps)
    return {"world": world, "num_envs": num_envs, "vector": vector, "steps": result.steps,
            "recorded_steps_per_s": recorded, "bare_steps_per_s": bare, "overhead_pct": 100 * (bare / recorded - 1)}


def bench_sampler(store: Path, window: int, seconds: float, workers: int) -> dict:
    ds = WindowDataset(store, window=window)
    rng = np.random.default_rng(0)
    frames, start = 0, time.perf_counter()
    if workers == 0:
        while time.perf_counter() - start < seconds:
            item = ds[int(rng.integers(len(ds)))]
            frames += item["obs"].shape[0]
    else:
        sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=10**9)
        loader = torch.utils.data.DataLoader(ds, batch_size=8, sampler=sampler, num_workers=workers,
                                             persistent_workers=False, prefetch_factor=4)
        it = iter(loader)
        next(it)  # worker start-up is not throughput
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            frames += int(np.prod(next(it)["obs"].shape[:2]))
        del it
    rate = frames / (time.perf_counter() - start)
    return {"reader": "WindowDataset" if workers == 0 else f"DataLoader, {workers} workers, batch 8",
            "window": window, "windows": len(ds), "frames_per_s": rate}


def training_consumption(window: int) -> list[dict]:
    """Frames/s consumed by one optimiser step (forward+backward, batch 4) of the small presets on 64x64 frames."""
    from worldsim.models.ae_presets import autoencoder_config
    from worldsim.models.autoencoder import VideoAutoencoder, autoencoder_loss
    from worldsim.models.presets import build_dit

    def rate(step, frames_per_step: int) -> float:
        step()  # warm-up
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < 5:
            step()
            n += frames_per_step
        return n / (time.perf_counter() - start)

    cfg = autoencoder_config("small")
    k, s = cfg.temporal_factor, cfg.spatial_factor
    ae = VideoAutoencoder(cfg)
    opt = torch.optim.AdamW(ae.parameters(), 1e-4)
    frames = torch.rand(4, 1 + ((window - 1) // k) * k, 3, 64, 64) * 2 - 1  # T = 1 + m k frames

    def ae_step():
        opt.zero_grad()
        autoencoder_loss(ae, frames)[0].backward()
        opt.step()

    dit = build_dit("small", latent_channels=cfg.latent_channels)
    dit_opt = torch.optim.AdamW(dit.parameters(), 1e-4)
    t = 1 + (window - 1) // k  # latent frames of a window
    x = torch.randn(4, t, cfg.latent_channels, 64 // s, 64 // s)

    def dit_step():
        dit_opt.zero_grad()
        dit(x, torch.rand(4, t)).prediction.square().mean().backward()
        dit_opt.step()

    return [{"model": f"autoencoder small ({frames.shape[1]} frames)", "frames_per_s": rate(ae_step, frames.numel() // (3 * 64 * 64))},
            {"model": f"DiT small (latents of {window} frames)", "frames_per_s": rate(dit_step, 4 * window)}]


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_results/data.json")
    p.add_argument("--quick", action="store_true", help="smaller runs (for a smoke check)")
    args = p.parse_args()
    episodes, seconds = (4, 2.0) if args.quick else (16, 8.0)
    tmp = Path(tempfile.mkdtemp(prefix="worldsim-bench-"))
    try:
        collection = [
            bench_collection(tmp, "crafter", 1, "sync", episodes, 200),
            bench_collection(tmp, "crafter", 2, "async", episodes, 200),
            bench_collection(tmp, "probe", 1, "sync", episodes, 200),
        ]
        store = tmp / "collect-crafter-2-async.zarr"
        sampler = [bench_sampler(store, 16, seconds, 0), bench_sampler(store, 16, seconds, 2)]
        consumption = training_consumption(16)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    needed = max((r.get("frames_per_s", 0) for r in consumption), default=0)
    result = {"machine": machine(), "collection": collection, "sampler": sampler, "training_consumption": consumption,
              "sampler_over_training": (max(r["frames_per_s"] for r in sampler) / needed) if needed else None}

    print(f"\nmachine: {result['machine']}\n")
    print("| world | envs | recorded steps/s | bare steps/s | recording overhead |\n|---|---|---|---|---|")
    for r in collection:
        print(f"| {r['world']} | {r['num_envs']} {r['vector']} | {r['recorded_steps_per_s']:.0f} | "
              f"{r['bare_steps_per_s']:.0f} | {r['overhead_pct']:+.1f}% |")
    print("\n| window reader (16 frames, 64x64) | frames/s |\n|---|---|")
    for r in sampler:
        print(f"| {r['reader']} | {r['frames_per_s']:.0f} |")
    print("\n| training step (forward+backward, batch 4) | frames/s consumed |\n|---|---|")
    for r in consumption:
        print(f"| {r['model']} | {r['frames_per_s']:.0f} |" if "frames_per_s" in r else f"| {r['model']} | {r['error']} |")
    if result["sampler_over_training"]:
        print(f"\nsampler / fastest training consumption: {result['sampler_over_training']:.0f}x (target >= 20x)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
