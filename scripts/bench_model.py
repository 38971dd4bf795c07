"""Benchmark the video model presets on this machine.

    .venv/bin/python scripts/bench_model.py [--out bench_results/model.json] [--presets tiny,small] [--seconds 3]

For every preset: parameters; forward FLOPs per latent frame (counted with torch's FlopCounterMode);
autoencoder encode and decode frames/s on 64x64 frames; DiT denoising steps/s for one new latent
frame attending to a cached context of 8 and 32 frames; achieved FLOP/s as a fraction of this
CPU's peak. The peak is given two ways: theoretical (cores x clock x FP32 FLOPs per cycle, 32 for
AVX2/AVX-512 with two FMA pipes, override with --flops-per-cycle) and measured (a large float32
matmul, the best this machine's BLAS does). Prints tables and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from worldsim.models.ae_presets import AE_PRESETS, autoencoder_config
from worldsim.models.autoencoder import VideoAutoencoder
from worldsim.models.presets import PRESETS, build_dit

FRAME = 64  # frame height and width in pixels


def timed(fn, seconds: float, min_runs: int = 2) -> float:
    """Seconds per call of `fn`, after one warm-up call, over at least `min_runs` calls or `seconds`."""
    fn()
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < seconds:
        fn()
        runs += 1
    return (time.perf_counter() - start) / runs


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def cpu_peak(flops_per_cycle: int, seconds: float) -> dict:
    mhz = None
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":")[1])
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    theoretical = threads * (mhz or 0) * 1e6 * flops_per_cycle
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    matmul = 2 * 2048**3 / timed(lambda: a @ b, seconds)
    return {"threads": threads, "mhz": mhz, "flops_per_cycle": flops_per_cycle,
            "theoretical_flops": theoretical, "matmul_flops": matmul}


@torch.inference_mode()
def bench_autoencoder(name: str, seconds: float) -> dict:
    cfg = autoencoder_config(name)
    model = VideoAutoencoder(cfg).eval()
    k = cfg.temporal_factor
    frames = torch.rand(1, 1 + 2 * k, 3, FRAME, FRAME) * 2 - 1  # 1 + 2k frames -> 3 latent frames
    z = model.encode(frames).mean
    n_frames, n_latent = frames.shape[1], z.shape[1]
    enc_flops, dec_flops = count_flops(lambda: model.encode(frames)), count_flops(lambda: model.decode(z))
    t_enc, t_dec = timed(lambda: model.encode(frames), seconds), timed(lambda: model.decode(z), seconds)
    return {
        "preset": name, "parameters": sum(p.numel() for p in model.parameters()),
        "latent": list(z.shape[2:]), "encode_flops_per_latent_frame": enc_flops / n_latent,
        "decode_flops_per_latent_frame": dec_flops / n_latent,
        "encode_frames_per_s": n_frames / t_enc, "decode_frames_per_s": n_frames / t_dec,
        "achieved_flops": (enc_flops + dec_flops) / (t_enc + t_dec),
    }


@torch.inference_mode()
def bench_dit(name: str, seconds: float, latent: tuple[int, int, int]) -> dict:
    c, h, w = latent
    model = build_dit(name, latent_channels=c).eval()
    row = {"preset": name, "parameters": sum(p.numel() for p in model.parameters()), "latent": list(latent)}
    frames = 9
    x = torch.randn(1, frames, c, h, w)
    row["forward_flops_per_latent_frame"] = count_flops(lambda: model(x, torch.rand(1, frames))) / frames
    for context in (8, 32):
        ctx = torch.randn(1, context, c, h, w)
        cache = model.build_cache(ctx, torch.zeros(1, context), frame_index=torch.arange(context)[None])
        new = torch.randn(1, 1, c, h, w)
        kw = dict(noise_level=torch.full((1, 1), 0.5), frame_index=torch.tensor([[context]]), cache=cache)
        flops = count_flops(lambda: model(new, **kw))
        t = timed(lambda: model(new, **kw), seconds)
        row[f"steps_per_s_ctx{context}"] = 1 / t
        row[f"flops_per_step_ctx{context}"] = flops
        row[f"achieved_flops_ctx{context}"] = flops / t
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_results/model.json")
    p.add_argument("--ae-presets", default=",".join(AE_PRESETS))
    p.add_argument("--dit-presets", default=",".join(PRESETS))
    p.add_argument("--seconds", type=float, default=3.0, help="time budget per measurement")
    p.add_argument("--flops-per-cycle", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    peak = cpu_peak(args.flops_per_cycle, args.seconds)
    ae = [bench_autoencoder(n, args.seconds) for n in args.ae_presets.split(",") if n]
    small = autoencoder_config("small")
    latent = (small.latent_channels, FRAME // small.spatial_factor, FRAME // small.spatial_factor)
    dit = [bench_dit(n, args.seconds, latent) for n in args.dit_presets.split(",") if n]
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
              "peak": peak, "autoencoder": ae, "dit": dit, "frame": FRAME}

    g = 1e9
    print(f"\nmachine: {result['machine']}, {peak['threads']} threads; peak FP32: theoretical "
          f"{peak['theoretical_flops'] / g:.0f} GFLOP/s, 2048^2 matmul {peak['matmul_flops'] / g:.0f} GFLOP/s\n")
    print(f"| autoencoder | params | latent of {FRAME}x{FRAME} | encode GFLOP/latent frame | decode GFLOP/latent frame "
          "| encode frames/s | decode frames/s | achieved GFLOP/s (% of matmul) |\n|---|---|---|---|---|---|---|---|")
    for r in ae:
        print(f"| {r['preset']} | {r['parameters'] / 1e6:.2f}M | {'x'.join(map(str, r['latent']))} | "
              f"{r['encode_flops_per_latent_frame'] / g:.2f} | {r['decode_flops_per_latent_frame'] / g:.2f} | "
              f"{r['encode_frames_per_s']:.1f} | {r['decode_frames_per_s']:.1f} | "
              f"{r['achieved_flops'] / g:.1f} ({100 * r['achieved_flops'] / peak['matmul_flops']:.0f}%) |")
    print(f"\n| DiT (latent {'x'.join(map(str, latent))}) | params | GFLOP/latent frame | steps/s, ctx 8 | steps/s, ctx 32 "
          "| achieved GFLOP/s ctx 32 (% of matmul, % of theoretical) |\n|---|---|---|---|---|---|")
    for r in dit:
        a = r["achieved_flops_ctx32"]
        print(f"| {r['preset']} | {r['parameters'] / 1e6:.2f}M | {r['forward_flops_per_latent_frame'] / g:.3f} | "
              f"{r['steps_per_s_ctx8']:.1f} | {r['steps_per_s_ctx32']:.1f} | {a / g:.1f} "
              f"({100 * a / peak['matmul_flops']:.0f}%, {100 * a / max(peak['theoretical_flops'], 1):.0f}%) |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
