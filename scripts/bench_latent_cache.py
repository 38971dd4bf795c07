"""DiT training throughput with latents cached once (the default) against encoding every batch.

    .venv/bin/python scripts/bench_latent_cache.py --data runs/probes400.zarr --vae runs/shipped-probes-ae/export

Runs `worldsim train` twice for `--steps` steps (same config, `latent_cache=true|false`), reads the
trainer's own samples/s from TensorBoard (the mean after the first logging window), prints a
table and writes JSON. The cache must already exist or is built before timing starts (it is not
part of the timed steps); run on a quiet machine and report the load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def samples_per_s(run: Path) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    values = [e.value for e in acc.Scalars("perf/samples_per_s")][1:]  # the first window holds the start-up
    return sum(values) / len(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--vae", required=True)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default="bench_results/latent_cache.json")
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29677"}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cached in (False, True):
            run = Path(tmp) / f"cache_{cached}"
            cmd = [sys.executable, "-m", "worldsim.cli", "train", f"data={args.data}", f"vae={args.vae}", f"run_dir={run}",
                   "model=tiny", "+model_overrides.dim=128", "+model_overrides.depth=4", "+model_overrides.heads=2",
                   "window=17", "batch_size=8", f"steps={args.steps}", "log_every=10", "checkpoint_every=100000",
                   "video_every=0", "validation.every=0", "export=false", "progress=false", f"latent_cache={str(cached).lower()}"]
            subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True)
            results["cached" if cached else "encode_every_batch"] = samples_per_s(run)
    results["speedup"] = results["cached"] / results["encode_every_batch"]
    results["load_average"] = os.getloadavg()
    print(f"{'DiT training':24s} {'samples/s':>10s}")
    print(f"{'encode every batch':24s} {results['encode_every_batch']:10.2f}")
    print(f"{'latents cached':24s} {results['cached']:10.2f}")
    print(f"speed-up {results['speedup']:.2f}x (load average {results['load_average'][0]:.1f})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
