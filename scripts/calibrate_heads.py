"""The reward and termination heads of a simulator against the real world, on held-out real episodes.

    .venv/bin/python scripts/calibrate_heads.py --checkpoint worldsim/pretrained/crafter \
        --store runs/pretrained/crafter.zarr --out docs/imagination/crafter_heads.json

Prints the reward's reliability (predicted mean per real value), its per-action bias (what a policy
trained in imagination would exploit) and the termination head's rates; writes the full report as JSON
(`worldsim.eval.calibration`). Default episodes: the ones training holds out by default.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from worldsim.data.store import EpisodeStore
from worldsim.eval.calibration import calibrate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="DiT export folder")
    p.add_argument("--store", required=True, help="episode store of the real world the export imitates")
    p.add_argument("--episodes", type=int, nargs="*", default=None, help="episode indices (default: held-out ones)")
    p.add_argument("--out", default=None, help="JSON report path")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = None
    with EpisodeStore.open(args.store, "r") as store:
        if "Crafter" in store.env_id:
            try:
                import crafter

                names = list(crafter.constants.actions)
            except ImportError:
                pass
    r = calibrate(args.checkpoint, args.store, args.episodes, names)
    print(f"{args.checkpoint} on {len(r['episodes'])} held-out episodes of {args.store}: {r['frames']} latent frames")
    if "reward" in r:
        rw = r["reward"]
        corr = "n/a" if rw["correlation"] is None else f"{rw['correlation']:.2f}"
        print(f"reward: real mean {rw['real_mean']:+.4f}, predicted {rw['predicted_mean']:+.4f}, mse {rw['mse']:.4f}, "
              f"correlation {corr}")
        print(f"  {'real value':>10} {'frames':>7} {'predicted':>10}")
        for value, b in rw["by_real_value"].items():
            print(f"  {value:>10} {b['frames']:>7} {b['predicted']:>+10.3f}")
        print(f"  {'action':>16} {'frames':>7} {'real':>8} {'predicted':>10}")
        for name, b in rw["by_action"].items():
            print(f"  {name:>16} {b['frames']:>7} {b['real']:>+8.3f} {b['predicted']:>+10.3f}")
    if "termination" in r:
        t = r["termination"]
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"termination: real rate {t['real_rate']:.4f}, predicted {t['predicted_rate']:.4f}, "
              f"precision {fmt(t['precision'])}, recall {fmt(t['recall'])}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(r, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
