"""Fit a DiT's motion gate alone on a store's cached latents (worldsim.train.motion_gate).

    python scripts/fit_motion_gate.py DIT_EXPORT STORE OUT [--key player_pos] [--width 32] [--steps 3000] [--kernel] [--json F]
"""

import argparse
import json
import sys

import torch

from worldsim.export import ExportError
from worldsim.train.motion_gate import fit_motion_gate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dit_export")
    parser.add_argument("store")
    parser.add_argument("out")
    parser.add_argument("--key", default="player_pos", help="the store state whose change the gate predicts")
    parser.add_argument("--width", type=int, default=32, help="channels of a new gate (a DiT without one)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kernel", action="store_true", help="also fit the action's kernel (the motion loss)")
    parser.add_argument("--json", default=None, help="also write the result (with the held-out curve) here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        result = fit_motion_gate(args.dit_export, args.store, args.out, args.key, args.width, args.steps, args.lr,
                                 args.batch, kernel=args.kernel)
    except (ValueError, OSError, ExportError) as e:
        sys.exit(f"fit_motion_gate: {e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(f"wrote {result['out']}")


if __name__ == "__main__":
    main()
