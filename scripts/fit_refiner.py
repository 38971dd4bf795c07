"""Fit a pixel refiner for a palette-world simulator export (worldsim.models.frame_refiner) and write it beside it.

    python scripts/fit_refiner.py EXPORT [--world probe] [--episodes 1400] [--first-seed 20000] [--rollout-steps 1]
                                  [--steps 4000] [--schedule-steps N] [--lr 1e-3] [--batch 16] [--mse 0] [--ce 1]
                                  [--init REFINER]
                                  [--out EXPORT/refiner.safetensors] [--curve F.json] [--threads 1]

Windows come from the real world's episodes of seeds first-seed.. (random actions held for k frames; for the probe
world, half random scenes and half the probe families), each step of the export drawn as it is served without a
refiner (worldsim.train.frame_refiner). --rollout-steps S > 1 adds the steps after the first, with the --init
refiner's frames (or the proposals) as what was shown before. The simulator then shows its frames through the
refiner whenever the export holds `refiner.safetensors` (SimConfig.refine=false turns it off).
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from gymnasium import spaces

from worldsim.models.frame_refiner import FrameRefiner, FrameRefinerConfig, load_frame_refiner, save_frame_refiner
from worldsim.sim.config import SimConfig
from worldsim.sim.simulator import Simulator
from worldsim.spaces import packed_dim
from worldsim.train.frame_refiner import fit_frame_refiner, refiner_windows

PROBE_MIX = ["random"] * 4 + ["permanence", "fall_bounce", "collision", "push"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export")
    ap.add_argument("--world", default="probe")
    ap.add_argument("--episodes", type=int, default=1400)
    ap.add_argument("--first-seed", type=int, default=20000)
    ap.add_argument("--rollout-steps", type=int, default=1)
    ap.add_argument("--stride", type=int, default=8, help="real frames between the starts of an episode's windows")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--schedule-steps", type=int, default=None, help="length of the cosine (default --steps)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--mse", type=float, default=0.0, help="weight of the expected colour's squared error")
    ap.add_argument("--ce", type=float, default=1.0, help="weight of the cross-entropy")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--held-out", type=int, default=1024, help="windows never fitted, scored at each evaluation")
    ap.add_argument("--every", type=int, default=250, help="fitting steps between evaluations (and saves)")
    ap.add_argument("--init", default=None, help="a refiner to start from (and to draw the later steps' history)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--curve", default=None, help="write the learning curve here as JSON")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sim = Simulator(args.export, SimConfig(refine=False))
    palette = sim.autoencoder.cfg.palette
    if not palette:
        print(f"error: {args.export} has no palette decoder: the refiner draws palette worlds only", file=sys.stderr)
        return 2
    if sim.action_space is None:
        print(f"error: {args.export} is action-free: the refiner reads each step's action", file=sys.stderr)
        return 2
    if args.init:
        net = load_frame_refiner(args.init)[0]
    else:
        discrete = isinstance(sim.action_space, spaces.Discrete)  # one-hot inside; any other space as packed
        net = FrameRefiner(FrameRefinerConfig(tuple(tuple(c) for c in palette),
                                              int(sim.action_space.n) if discrete else packed_dim(sim.action_space),
                                              discrete=discrete, frames=sim.k, width=args.width))
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    kwargs = {"family": PROBE_MIX} if args.world == "probe" else {}
    windows = refiner_windows(sim, args.world, seeds, steps=args.rollout_steps, stride=args.stride,
                              refiner=net if args.init else None, env_kwargs=kwargs)
    if len(windows["action"]) <= args.held_out:
        print(f"error: {len(windows['action'])} windows, none left to fit once --held-out {args.held_out} are set aside",
              file=sys.stderr)
        return 2
    print(f"{len(windows['action'])} windows from {args.episodes} episodes")
    out = Path(args.out or Path(args.export) / "refiner.safetensors")
    extra = {"episodes": args.episodes, "first_seed": args.first_seed, "rollout_steps": args.rollout_steps,
             "steps": args.steps, "schedule_steps": args.schedule_steps, "lr": args.lr, "batch": args.batch,
             "mse": args.mse, "ce": args.ce, "init": args.init}

    def on_eval(curve):
        print(json.dumps(curve[-1]), flush=True)
        save_frame_refiner(out, net, {**extra, "curve": curve})
        if args.curve:
            Path(args.curve).write_text(json.dumps(curve, indent=1))

    fit_frame_refiner(net, windows, args.steps, batch=args.batch, lr=args.lr, schedule_steps=args.schedule_steps,
                      mse=args.mse, ce=args.ce, held_out=args.held_out, every=args.every, on_eval=on_eval)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
