"""Benchmark the learned simulator against the real worlds, in one run: speed, where a step's time goes, FLOP/s.

    .venv/bin/python scripts/bench_sim.py [--models crafter probes [probes@OLD_EXPORT]] [--batches 1 8 32] [--sampling-steps 1 2 4]
                                          [--dtypes float32] [--threads 2] [--out bench_results/bench_sim.json]

For each shipped model (`worldsim/pretrained/<name>`), sampling-step count, dtype and batch size:
frames/s (k real frames per latent step) with every context full (the steady state of a long
episode), ms per step, and the step's split into DiT forwards (the conv prior's share of them apart),
decoder and the rest (context gathering, cache bookkeeping, noise); the DiT's achieved GFLOP/s
(FLOPs counted by `torch.utils.flop_counter` on one step) against the matmul peak measured in the
same run (a 1024x1024 fp32 matmul, and bf16 where the CPU multiplies it natively); the ratio to
the real world's frames/s, also measured in this run. Then the step time against the horizon
(16 vs 1024, every context scheme, `--repeats` runs each for the spread). Prints tables and
writes JSON with the machine, its load before and after, and the torch thread count.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from worldsim.pretrained import pretrained_path  # noqa: E402
from worldsim.sim.config import SimConfig  # noqa: E402
from worldsim.sim.simulator import Simulator  # noqa: E402
from worldsim.hardware import cpu_has_native_bf16  # noqa: E402

REAL = {"crafter": "crafter", "probes": "probe"}  # shipped model -> the real world it imitates


def model_folder(model: str) -> Path:
    """`--models` item -> export folder: a shipped name, or NAME@FOLDER for another export of that world."""
    name, _, folder = model.partition("@")
    return Path(folder) if folder else pretrained_path(name)


def world_of(model: str) -> str:
    return REAL[model.partition("@")[0]]


def matmul_peak(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0) -> float:
    """GFLOP/s of an n x n matmul in `dtype` with the current thread count."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def real_world_fps(name: str, size: int, steps: int = 400) -> float:
    """Frames/s of the real world under random actions (resets included)."""
    from worldsim.envs import make_real_env

    env = make_real_env(name, size=size)
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    fps = steps / (time.perf_counter() - start)
    env.close()
    return fps


class Split:
    """Wall time spent inside the simulator's DiT calls (and, within them, its conv prior), decoder calls and
    re-encoding (`reencode`)."""

    def __init__(self, sim: Simulator) -> None:
        self.dit = self.prior = self.decoder = self.encoder = 0.0
        sim._dit = self._timed(sim._dit, "dit")
        sim._decode_fn = self._timed(sim._decode_fn, "decoder")
        sim._reencoded = self._timed(sim._reencoded, "encoder")
        if sim.dit.prior is not None:
            sim.dit.prior.forward = self._timed(sim.dit.prior.forward, "prior")

    def _timed(self, fn, name: str):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                setattr(self, name, getattr(self, name) + time.perf_counter() - start)
        return wrapper

    def reset(self) -> None:
        self.dit = self.prior = self.decoder = self.encoder = 0.0


def context_frames(name: str, size: int, n: int = 5) -> np.ndarray:
    """n real frames of the world `name` (the context a rollout starts from)."""
    from worldsim.envs import make_real_env

    env = make_real_env(name, size=size)
    obs, _ = env.reset(seed=0)
    frames = [obs]
    for _ in range(n - 1):
        frames.append(env.step(env.action_space.sample())[0])
    env.close()
    return np.stack(frames)


def measure(sim: Simulator, context: np.ndarray, batch: int, steps: int) -> dict:
    # the steady state of a long episode: every track's context full (the scheme's whole budget selected)
    tracks = [fast_forward(sim, sim.start(context), 4 * sim.scheme.budget) for _ in range(batch)]
    gens = [torch.Generator().manual_seed(i) for i in range(batch)]
    actions = np.zeros((batch, sim.action_dim), dtype=np.float32)
    split = Split(sim)
    sim.step(tracks, actions, gens)  # warm-up
    with FlopCounterMode(display=False) as counter:
        sim.step(tracks, actions, gens)
    flops = counter.get_total_flops()
    dit_counts = counter.get_flop_counts().get("DiT")  # FLOPs under the DiT module, by operator
    dit_flops = None if dit_counts is None else sum(dit_counts.values())
    split.reset()
    start = time.perf_counter()
    for _ in range(steps):
        sim.step(tracks, actions, gens)
    total = (time.perf_counter() - start) / steps
    dit, decoder, encoder = split.dit / steps, split.decoder / steps, split.encoder / steps
    return {"batch": batch, "ms_per_step": 1000 * total, "frames_per_s": batch * sim.k / total,
            "dit_ms": 1000 * dit, "prior_ms": 1000 * split.prior / steps, "decoder_ms": 1000 * decoder, "encoder_ms": 1000 * encoder,
            "other_ms": 1000 * (total - dit - decoder - encoder),
            "step_gflop": flops / 1e9, "dit_gflop": None if dit_flops is None else dit_flops / 1e9,
            "dit_gflop_per_s": None if not dit_flops or dit == 0 else dit_flops / dit / 1e9}


def fast_forward(sim: Simulator, track, horizon: int):
    """Give `track` length `horizon` with every frame the scheme selects there present (copies of its first frame)."""
    src = min(track.latents)
    for i in sim.scheme.select(horizon):
        track.latents[i], track.actions[i], track.masks[i] = track.latents[src], track.actions[src], track.masks[src]
        if track.kv:
            track.kv[i] = {**track.kv[src], "frame_index": torch.tensor(i)}
    track.length = horizon
    sim._prune(track)
    return track


def horizon_times(name: str, context: np.ndarray, horizons: list[int], repeats: int, steps: int, base: dict) -> list[dict]:
    rows = []
    for scheme in ("autoregressive", "long-range", "hierarchical"):
        sim = Simulator(model_folder(name), SimConfig(**base, context=scheme))
        gens = [torch.Generator().manual_seed(0)]
        actions = np.zeros((1, sim.action_dim), dtype=np.float32)
        times = {h: [] for h in horizons}
        for _ in range(repeats):
            for h in horizons:
                track = fast_forward(sim, sim.start(context), h)
                sim.step([track], actions, gens)
                start = time.perf_counter()
                for _ in range(steps):
                    sim.step([track], actions, gens)
                times[h].append(1000 * (time.perf_counter() - start) / steps)
        lo, hi = min(horizons), max(horizons)
        ratios = [b / a for a, b in zip(times[lo], times[hi])]
        rows.append({"scheme": scheme, **{f"ms_at_{h}": statistics.median(times[h]) for h in horizons},
                     "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["crafter", "probes"],
                    help="shipped models, or NAME@EXPORT_FOLDER: another export of NAME's world (e.g. an earlier version)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--sampling-steps", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--budgets", type=int, nargs="+", default=[None],
                    help="context budgets (latent frames attended to per step) of the batch measurements; default: as trained")
    ap.add_argument("--dtypes", nargs="+", default=["auto"], help="auto, float32 and/or bfloat16 (simulator dtype)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    ap.add_argument("--horizons", type=int, nargs="+", default=[16, 1024])
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each horizon measurement (for the spread)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also measure sim.compile=true (minutes of compilation first)")
    ap.add_argument("--reencode", action="store_true",
                    help="measure reencode=false and true (generated frames re-encoded as context); default: as each export is served")
    ap.add_argument("--out", default="bench_results/bench_sim.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    peaks = {"float32": matmul_peak(torch.float32)}
    if cpu_has_native_bf16():
        peaks["bfloat16"] = matmul_peak(torch.bfloat16)
    machine = {"cpu": platform.processor() or platform.machine(), "capability": torch.backends.cpu.get_cpu_capability(),
               "native_bf16": cpu_has_native_bf16(), "threads": args.threads, "load_before": load_before,
               "matmul_gflop_per_s": peaks}
    print(f"machine: {machine['capability']}, {args.threads} threads, load {load_before[0]:.2f}; matmul peak "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    results: dict = {"machine": machine, "real": {}, "sim": [], "horizon": {}}
    for name in args.models:
        sim0 = Simulator(model_folder(name), SimConfig())
        size = sim0.frame_size[0]
        results["real"][name] = real_world_fps(world_of(name), size)
        context = context_frames(world_of(name), size)
        print(f"\n{name}: real world {results['real'][name]:.0f} frames/s")
        print(f"{'dtype':>8s} {'budget':>6s} {'steps':>5s} {'batch':>5s} {'frames/s':>9s} {'x real':>7s} {'ms/step':>8s} {'DiT ms':>7s} {'prior':>6s} "
              f"{'dec ms':>7s} {'enc ms':>7s} {'other':>7s} {'DiT GFLOP/s':>11s} {'/ peak':>6s}")
        settings = [(d, c, b, r) for d in args.dtypes for c in ([False, True] if args.compile else [False])
                    for b in args.budgets for r in ([False, True] if args.reencode else [None])]
        for dtype, compiled, budget, reencode in settings:
            for sampling in args.sampling_steps:
                sim = Simulator(model_folder(name), SimConfig(sampling_steps=sampling, dtype=dtype, compile=compiled,
                                                                 context_budget=budget, reencode=reencode))
                for batch in args.batches:
                    row = {"model": name, "dtype": dtype + ("+compile" if compiled else "") + ("+reencode" if sim.reencode else ""),
                           "context_budget": sim.scheme.budget, "reencode": sim.reencode,
                           "sampling_steps": sampling, **measure(sim, context, batch, args.steps)}
                    row["x_real"] = row["frames_per_s"] / results["real"][name]
                    peak = peaks.get(dtype if dtype != "auto" else ("bfloat16" if sim.autocast else "float32"), peaks["float32"])
                    row["dit_peak_fraction"] = None if row["dit_gflop_per_s"] is None else row["dit_gflop_per_s"] / peak
                    results["sim"].append(row)
                    gf = row["dit_gflop_per_s"] or float("nan")
                    print(f"{row['dtype']:>8s} {sim.scheme.budget:6d} {sampling:5d} {batch:5d} {row['frames_per_s']:9.1f} {row['x_real']:7.3f} "
                          f"{row['ms_per_step']:8.1f} {row['dit_ms']:7.1f} {row['prior_ms']:6.1f} {row['decoder_ms']:7.1f} {row['encoder_ms']:7.1f} {row['other_ms']:7.1f} "
                          f"{gf:11.1f} {row['dit_peak_fraction'] or float('nan'):6.2f}")
        base = {"sampling_steps": max(args.sampling_steps), "context_frames": 4}
        rows = horizon_times(name, context, args.horizons, args.repeats, max(2, args.steps // 2), base)
        results["horizon"][name] = rows
        lo, hi = min(args.horizons), max(args.horizons)
        print(f"\n{'scheme':15s} {'ms@' + str(lo):>8s} {'ms@' + str(hi):>9s} {'ratio':>6s} {'(min-max)':>12s}   ({name}, batch 1)")
        for r in rows:
            print(f"{r['scheme']:15s} {r[f'ms_at_{lo}']:8.1f} {r[f'ms_at_{hi}']:9.1f} {r['ratio']:6.2f} "
                  f"{r['ratio_min']:5.2f}-{r['ratio_max']:.2f}")
    machine["load_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nload average after: {machine['load_after'][0]:.2f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
