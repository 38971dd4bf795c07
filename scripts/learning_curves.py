"""Learning curves of training runs from their validation.jsonl: one PNG per metric, a table, JSON.

    .venv/bin/python scripts/learning_curves.py base=runs/lc/probes-dit-base noise=runs/lc/probes-dit-noise \
        --metrics next_psnr action_win --x cpu_min --out docs/curves/probes-dit

Each run folder is one a `worldsim train` / `train-vae` run wrote (validation on, the default).
The x axis is the process CPU time in minutes (`cpu_min`, what a lever costs on a CPU), the
optimizer step (`step`) or the training samples seen (`samples`). The table gives, per run, the
last validation and the best value of each metric with the CPU minutes it took to get there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worldsim.eval.plots import line_plot  # noqa: E402

HIGHER_IS_BETTER = {"psnr": True, "balls_found": True, "next_psnr": True, "action_sensitivity": True,
                    "action_win": True, "tf_x0_mse": False, "rollout_psnr": True,
                    "rollout_balls_found": True, "copy_psnr": True, "wrong_colour": False}


def read_curve(run: Path) -> list[dict]:
    path = run / "validation.jsonl"
    if not path.is_file():
        raise SystemExit(f"no validation.jsonl in {run}: was the run trained with validation on?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def x_value(row: dict, axis: str) -> float:
    return row["cpu_s"] / 60 if axis == "cpu_min" else float(row[axis])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR (or RUN_DIR: its folder name is the label)")
    ap.add_argument("--metrics", nargs="*", default=None, help="metrics to plot (default: every one found)")
    ap.add_argument("--x", default="cpu_min", choices=["cpu_min", "step", "samples"])
    ap.add_argument("--out", default="learning_curves", help="folder for the PNGs and curves.json")
    args = ap.parse_args(argv)
    curves = {}
    for spec in args.runs:
        label, _, path = spec.rpartition("=")
        curves[label or Path(path).name] = read_curve(Path(path))
    found = [k for rows in curves.values() for r in rows for k in r if k in HIGHER_IS_BETTER]
    metrics = args.metrics or list(dict.fromkeys(found))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    for metric in metrics:
        series = {label: ([x_value(r, args.x) for r in rows if metric in r], [r[metric] for r in rows if metric in r])
                  for label, rows in curves.items()}
        line_plot(out / f"{metric}.png", f"held-out {metric}", {"cpu_min": "CPU minutes", "step": "optimizer step",
                  "samples": "training samples"}[args.x], metric, series)
    print(f"{'run':28s} {'metric':20s} {'last':>10s} {'best':>10s} {'best at cpu-min':>16s} {'steps':>8s}")
    for label, rows in curves.items():
        summary[label] = {}
        for metric in metrics:
            have = [r for r in rows if metric in r]
            if not have:
                continue
            pick = max if HIGHER_IS_BETTER[metric] else min
            best = pick(have, key=lambda r: r[metric])
            summary[label][metric] = {"last": have[-1][metric], "best": best[metric], "best_cpu_min": best["cpu_s"] / 60,
                                      "last_step": have[-1]["step"], "last_cpu_min": have[-1]["cpu_s"] / 60}
            print(f"{label:28s} {metric:20s} {have[-1][metric]:10.4g} {best[metric]:10.4g} {best['cpu_s'] / 60:16.1f} "
                  f"{have[-1]['step']:8d}")
    (out / "curves.json").write_text(json.dumps({"x": args.x, "summary": summary, "curves": curves}, indent=1))
    print(f"plots and curves.json in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
