"""Quality against the number of sampling steps, on held-out windows of the training store.

    .venv/bin/python scripts/sampling_steps.py --export worldsim/pretrained/probes --data runs/pretrained/probes.zarr

Runs the trainer's DiT validation (`worldsim.train.validation.DiTValidator`: next-frame PSNR, 4-step
rollout PSNR, action sensitivity, balls found) on the same held-out episodes the training used
(spread over the store, as `holdout_episodes` picks them), once per sampling-step count. Prints a
table and writes JSON.

`--split both` also scores as many windows of the episodes the DiT trained on: a model that scores
about the same on both is underfitting (more capacity or steps is the lever, not more data); one
far better on its training episodes is overfitting (more data is).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from worldsim.data.store import EpisodeStore  # noqa: E402
from worldsim.export import load_export  # noqa: E402
from worldsim.train.latent_cache import LatentWindowDataset, build_cache  # noqa: E402
from worldsim.models.latents import num_latent_frames  # noqa: E402
from worldsim.train.validation import DiTValidator, ValidationConfig, holdout_episodes  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--holdout", nargs="*", type=int, default=None, help="held-out episodes (default: as training picks them)")
    ap.add_argument("--split", choices=["holdout", "train", "both"], default="holdout",
                    help="score held-out windows, windows of the training episodes, or both (the generalisation gap)")
    ap.add_argument("--out", default="bench_results/sampling_steps.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    models, meta = load_export(args.export)
    ae, dit = models["autoencoder"].eval(), models["dit"].eval()
    with EpisodeStore.open(args.data, "r") as store:
        episodes = store.num_episodes
    holdout = args.holdout or holdout_episodes(episodes, None)
    cache = build_cache(args.data, ae, progress=False)
    frames = num_latent_frames(meta.get("window", 17), ae.cfg.temporal_factor)
    splits = {"holdout": holdout, "train": [e for e in range(episodes) if e not in set(holdout)]}
    rows = []
    for split in (["holdout", "train"] if args.split == "both" else [args.split]):
        data = LatentWindowDataset(cache, args.data, frames, splits[split])
        for steps in args.steps:
            val = DiTValidator(data, args.data, ValidationConfig(windows=args.windows, sample_steps=steps), ae,
                               torch.device("cpu"), dit.config.action_space is not None)
            t0 = time.perf_counter()
            metrics = val(dit)
            rows.append({"split": split, "sampling_steps": steps, "seconds": time.perf_counter() - t0, **metrics})
    keys = [k for k in ("tf_x0_mse", "next_psnr", "rollout_psnr", "ceiling_psnr", "latent_copy_psnr", "copy_psnr", "action_win", "balls_found", "rollout_balls_found")
            if k in rows[0]]
    print(f"{'split':>7s} {'steps':>5s} " + " ".join(f"{k:>19s}" for k in keys))
    for r in rows:
        print(f"{r['split']:>7s} {r['sampling_steps']:5d} " + " ".join(f"{r[k]:19.4f}" for k in keys))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"export": args.export, "holdout": holdout, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
