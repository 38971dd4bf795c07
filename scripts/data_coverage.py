"""What a recording shows: per group of episodes, how often something happens (Crafter and any store).

    .venv/bin/python scripts/data_coverage.py runs/pretrained/crafter.zarr --groups explore=0:120 random=120:180

Per group: episodes, mean length, rewards of at least 1 per episode (Crafter pays 1 per new
achievement: collecting, placing, crafting, eating, drinking, defeating), the fraction of steps whose
frame changes visibly (mean absolute pixel change above 2 of 255: the agent moved, the view
scrolled, something appeared) and the mean absolute change. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worldsim.data.store import EpisodeStore  # noqa: E402

CHANGE = 2.0  # mean |pixel change| (0-255) above which a step counts as visibly changing the frame


def coverage(store: EpisodeStore, episodes: range) -> dict[str, float]:
    lengths, unlocks, changing, change = [], 0, [], []
    for e in episodes:
        s = store.episode_slice(e)
        obs = store.read("obs", s.start, s.stop).astype(np.float32)
        reward = store.read("reward", s.start, s.stop)
        lengths.append(s.stop - s.start - 1)
        unlocks += int((reward >= 0.999).sum())
        diff = np.abs(np.diff(obs, axis=0)).mean(axis=(1, 2, 3))
        changing.append(diff > CHANGE)
        change.append(diff)
    changing_all, change_all = np.concatenate(changing), np.concatenate(change)
    return {"episodes": len(episodes), "mean_length": float(np.mean(lengths)), "rewards_ge_1_per_episode": unlocks / len(episodes),
            "frames_changing": float(changing_all.mean()), "mean_abs_change": float(change_all.mean())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--groups", nargs="+", default=None, help="NAME=FIRST:STOP episode ranges (default: all)")
    ap.add_argument("--out", default="bench_results/data_coverage.json")
    args = ap.parse_args()
    store = EpisodeStore.open(args.store, "r")
    groups = {"all": range(store.num_episodes)}
    if args.groups:
        groups = {}
        for g in args.groups:
            name, _, span = g.partition("=")
            a, b = span.split(":")
            groups[name] = range(int(a), int(b))
    rows = {name: coverage(store, eps) for name, eps in groups.items()}
    print(f"{'group':10s} {'episodes':>8s} {'length':>7s} {'rewards>=1/ep':>13s} {'frames changing':>15s} {'mean |change|':>13s}")
    for name, r in rows.items():
        print(f"{name:10s} {r['episodes']:8d} {r['mean_length']:7.1f} {r['rewards_ge_1_per_episode']:13.2f} "
              f"{r['frames_changing']:15.2f} {r['mean_abs_change']:13.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"store": args.store, "groups": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
