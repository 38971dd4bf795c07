"""Fit a DiT's motion field alone on a store's cached latents (worldsim.train.motion_field).

    python scripts/fit_motion_field.py DIT_EXPORT STORE OUT [--width 32] [--radius 4] [--steps 1500] [--prior [--heads 2] [--frames 8] [--distill [--teacher EXPORT] | --widen]] [--schedule cosine] [--json F]
"""

import argparse
import json
import sys

import torch

from worldsim.export import ExportError
from worldsim.train.motion_field import fit_motion_field


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dit_export")
    parser.add_argument("store")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=None,
                        help="channels of a new field or prior (default 32); for a DiT whose prior has another width, "
                             "a fresh prior of this width replaces it")
    parser.add_argument("--radius", type=int, default=4, help="latent pixels a new field's kernels reach each way")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prior", action="store_true", help="fit a conv prior of --width channels instead of a field")
    parser.add_argument("--unroll", type=int, default=1,
                        help="fit over rollouts of this many steps, the module's own guesses fed back")
    parser.add_argument("--heads", type=int, default=1,
                        help="a prior's heads: > 1 makes a committed prior (several guesses, one chosen)")
    parser.add_argument("--frames", type=int, default=2,
                        help="frames a prior reads before each one (> 2: older ones too, DiTConfig.prior_frames)")
    parser.add_argument("--distill", action="store_true",
                        help="fit the fresh prior of --width to the replaced prior's guesses (a cheaper drop-in)")
    parser.add_argument("--widen", action="store_true",
                        help="widen the prior to --width (a multiple of its width) guessing exactly as before, instead "
                             "of replacing it by a fresh one")
    parser.add_argument("--teacher", default=None,
                        help="with --distill: the DiT export whose conv prior is distilled (default: the replaced one); "
                             "how a distilled prior continues from its OUT")
    parser.add_argument("--change-weight", type=float, default=0.0,
                        help="weigh latent pixels that change by up to 1 + this in the training error")
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                        help="learning rate after the first step: constant, or cosine down to 0 at the last")
    parser.add_argument("--eval-every", type=int, default=250,
                        help="steps between held-out evaluations; the export is written at each")
    parser.add_argument("--json", default=None, help="also write the result (with the held-out curve) here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        result = fit_motion_field(args.dit_export, args.store, args.out, args.width, args.radius, args.steps,
                                  args.lr, args.batch, kind="prior" if args.prior else "field",
                                  unroll=args.unroll, schedule=args.schedule,
                                  eval_every=args.eval_every, heads=args.heads,
                                  change_weight=args.change_weight, frames=args.frames, distill=args.distill,
                                  teacher_export=args.teacher, widen=args.widen)
    except (ValueError, OSError, ExportError) as e:
        sys.exit(f"fit_motion_field: {e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(f"wrote {result['out']}")


if __name__ == "__main__":
    main()
