"""Training throughput under DeepSpeed: ZeRO 0/1/2/3 at 1 and 2 processes, and engine vs a plain loop.

    .venv/bin/python scripts/bench_train.py [--preset small] [--steps 6] [--out bench_train.json]

Each configuration trains the DiT preset (with reward/termination heads) on random latents of the
shape a 64x64 video of 9 frames gives with the small autoencoder (5 latent frames, 8 channels,
16x16), batch 4 per process, through `worldsim.train.engine.build_engine` with the config the
trainer generates. "plain" is the same model, loss and AdamW in a bare PyTorch loop (one process).
Samples/s and tokens/s count all processes; peak memory is each rank's peak resident set size.
Achieved FLOP/s (matmul/attention FLOPs counted by torch.utils.flop_counter) is given as a fraction
of this machine's measured fp32 matmul peak (a 2048^3 matmul on all its cores). Prints a table and
writes JSON. Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

LATENT = (5, 8, 16, 16)  # (T', C, h, w)
BATCH = 4


def _model_and_batch(preset: str, seed: int = 0):
    from gymnasium import spaces

    from worldsim.models.dit import DiT
    from worldsim.models.presets import dit_config
    from worldsim.spaces import space_to_json

    torch.manual_seed(seed)
    cfg = dit_config(preset, latent_channels=LATENT[1], action_space=space_to_json(spaces.Discrete(17)),
                     action_substeps=2, reward_head=True, termination_head=True)
    model = DiT(cfg)
    x0 = torch.randn(BATCH, *LATENT)
    actions = torch.randint(0, 17, (BATCH, LATENT[0], 2, 1))
    reward, term = torch.rand(BATCH, LATENT[0]), (torch.rand(BATCH, LATENT[0]) < 0.1).float()
    tokens = BATCH * LATENT[0] * (LATENT[2] // cfg.patch_size) * (LATENT[3] // cfg.patch_size)
    return model, (x0, actions, reward, term), tokens


def _loss(model, batch, generator):
    from worldsim.diffusion.objective import diffusion_loss

    x0, actions, reward, term = batch
    return diffusion_loss(model, x0, actions, None, None, generator, reward=reward, termination=term)[0]


def _flops_per_step(preset: str) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model, batch, _ = _model_and_batch(preset)
    with FlopCounterMode(display=False) as counter:
        _loss(model, batch, torch.Generator().manual_seed(0)).backward()
    return float(counter.get_total_flops())


def _matmul_peak() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048**3 / (time.perf_counter() - start)


def worker(args) -> None:
    """One rank of one configuration; writes {samples_s, tokens_s, peak_mb} to args.result + rank."""
    from worldsim.train import engine as eng
    from worldsim.train.config import DistConfig, OptimConfig, TrainConfig

    torch.set_num_threads(args.threads)

    model, batch, tokens = _model_and_batch(args.preset)
    generator = torch.Generator().manual_seed(1)
    if args.mode == "plain":
        rank, world = 0, 1
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99))

        def step():
            loss = _loss(model, batch, generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    else:
        cfg = TrainConfig(data="-", batch_size=BATCH, optim=OptimConfig(lr=1e-4, grad_clip=1.0),
                          dist=DistConfig(zero_stage=args.stage, port=args.port))
        rank, world = eng.init_distributed(args.port)
        engine = eng.build_engine(model, cfg)

        def step():
            loss = _loss(engine, batch, generator)
            engine.backward(loss)
            engine.step()
    for _ in range(args.warmup):
        step()
    if world > 1:
        eng.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if world > 1:
        eng.barrier()
    seconds = time.perf_counter() - start
    result = {"samples_s": args.steps * BATCH * world / seconds, "tokens_s": args.steps * tokens * world / seconds,
              "step_s": seconds / args.steps, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    Path(f"{args.result}.{rank}").write_text(json.dumps(result))


def run_config(args, mode: str, stage: int, nproc: int, port: int) -> dict:
    result = Path(tempfile.mkdtemp()) / "r"
    script = [os.path.abspath(__file__), "--worker", "--mode", mode, "--stage", str(stage), "--preset", args.preset,
              "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads), "--result", str(result), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(args.threads)
    if nproc == 1:
        cmd = [sys.executable, *script]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(port), *script]
    for attempt in range(2):  # one retry: a rendezvous can fail on a busy shared machine
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode == 0:
            break
    if proc.returncode != 0:
        errors = [ln.strip() for ln in proc.stderr.splitlines() if "Error" in ln and "Warning" not in ln]
        return {"error": errors[-1] if errors else f"exit {proc.returncode}"}
    ranks = [json.loads(Path(f"{result}.{r}").read_text()) for r in range(nproc)]
    return {"samples_s": min(r["samples_s"] for r in ranks), "tokens_s": min(r["tokens_s"] for r in ranks),
            "step_s": max(r["step_s"] for r in ranks), "peak_mb_per_rank": [round(r["peak_mb"]) for r in ranks]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", default="bench_train.json")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (1: a fair per-core comparison; torchrun sets 1 anyway)")
    p.add_argument("--repeats", type=int, default=2, help="runs of plain and ZeRO-0 x1, alternated; the best counts")
    p.add_argument("--overhead-only", action="store_true", help="only plain vs ZeRO-0 x1 (alternated --repeats times)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="engine", help=argparse.SUPPRESS)
    p.add_argument("--stage", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=29700, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    torch.set_num_threads(args.threads)
    flops = _flops_per_step(args.preset)
    peak = _matmul_peak()  # one process at its thread count
    rows = []
    port = 29700
    configs = [("plain", 0, 1), ("engine", 0, 1)] * args.repeats + [("engine", s, n) for n in (1, 2) for s in (0, 1, 2, 3)
                                                                     if (s, n) != (0, 1) and not args.overhead_only]
    for mode, stage, nproc in configs:
        port += 1
        r = run_config(args, mode, stage, nproc, port)
        r.update(mode=mode, zero_stage=stage if mode == "engine" else None, processes=nproc)
        if "step_s" in r:
            r["achieved_flops"] = flops * nproc / r["step_s"]
            r["fraction_of_peak"] = r["achieved_flops"] / (peak * nproc)
        print(f"done: {mode} stage {stage} x{nproc}: {r.get('samples_s', r.get('error'))}", file=sys.stderr, flush=True)
        same = next((x for x in rows if (x["mode"], x["zero_stage"], x["processes"]) == (r["mode"], r["zero_stage"], nproc)), None)
        if same is None:
            rows.append(r)
        elif r.get("samples_s", 0) > same.get("samples_s", 0):
            rows[rows.index(same)] = r
    plain = rows[0].get("samples_s")
    engine1 = next(r for r in rows if r["mode"] == "engine" and r["zero_stage"] == 0 and r["processes"] == 1)
    overhead = None if not plain or "samples_s" not in engine1 else plain / engine1["samples_s"] - 1
    print(f"DiT preset {args.preset}, batch {BATCH}/process, latents {LATENT}, {flops / 1e9:.2f} GFLOP/step/process, "
          f"measured matmul peak {peak / 1e9:.1f} GFLOP/s per process ({args.threads} thread(s)), {os.cpu_count()} CPUs")
    print(f"{'run':<16}{'samples/s':>10}{'tokens/s':>10}{'s/step':>8}{'GFLOP/s':>9}{'% peak':>8}  peak MB per rank")
    for r in rows:
        name = "plain torch" if r["mode"] == "plain" else f"ZeRO-{r['zero_stage']} x{r['processes']}"
        if "error" in r:
            print(f"{name:<16}  error: {r['error']}")
            continue
        print(f"{name:<16}{r['samples_s']:>10.2f}{r['tokens_s']:>10.0f}{r['step_s']:>8.2f}"
              f"{r['achieved_flops'] / 1e9:>9.1f}{100 * r['fraction_of_peak']:>7.1f}%  {r['peak_mb_per_rank']}")
    if overhead is not None:
        print(f"engine overhead (ZeRO-0, 1 process) vs the plain loop: {100 * overhead:+.1f}% (target < 10%)")
    Path(args.out).write_text(json.dumps({"preset": args.preset, "batch_per_process": BATCH, "latent": LATENT,
                                          "flops_per_step_per_process": flops, "matmul_peak_flops": peak,
                                          "engine_overhead": overhead, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
