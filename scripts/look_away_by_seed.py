"""Look away and back, seed by seed: where a simulator loses the place it left, and why.

`worldsim eval` gives the mean PSNR of the frame on return. A mean mixes two failures: a real walk that was blocked
(the real player stops at a tree, so it ends elsewhere than where it started, and a simulator that comes back to the
start scores low however well it remembers) and a simulator that forgot. For each seed this prints the real player's
displacement after the walk away and after the walk back (Crafter's `player_pos`, in tiles, where the world records
it), and the PSNR of the real return against the frame before leaving, of the simulated return against that frame,
and of the simulated return against the real one (what the evaluation scores), beside the memoryless reference (the
mean of the other seeds' real returns: what a simulator that forgot everything and drew the typical view scores).

With `--walk-given` the simulator does not draw the walk away: its context is the real frames up to the turn (the
evaluation's context and then the n latent steps away), and it draws only the n steps back. Against the full loop
this tells drift (the frames it drew on the way away were wrong) from forgetting (the way back fails even then).

    python scripts/look_away_by_seed.py worldsim/pretrained/crafter --sampling-steps 2 --guidance 3 --budget 8 \
        --walk-given --out look_away.json

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from worldsim.eval.consistency import LOOPS, Loop, loop_scores
from worldsim.eval.paired import paired_rollouts
from worldsim.eval.simulated import SimRunner
from worldsim.models.latents import num_real_frames
from worldsim.sim.config import SimConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="DiT export (or a shipped name such as worldsim/pretrained/crafter)")
    p.add_argument("--world", default="crafter", choices=sorted(LOOPS), help="the real world it imitates")
    p.add_argument("--first-seed", type=int, default=100_000)
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--n", type=int, default=4, help="latent steps away, then as many back")
    p.add_argument("--context-frames", type=int, default=4, help="latent frames of real context before the walk")
    p.add_argument("--sampling-steps", type=int, default=1)
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--budget", type=int, default=None, help="context budget (None: as the export is served)")
    p.add_argument("--walk-given", action="store_true", help="the walk away is real context; only the way back is drawn")
    p.add_argument("--size", type=int, default=None, help="frame size (default: the export's)")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--out", default=None, help="JSON file to write")
    args = p.parse_args(argv)
    if args.n < 1 or args.seeds < 1 or args.context_frames < 1:
        p.error("--n, --seeds and --context-frames must be >= 1")
    return args


def displacement(state: dict, frames: list[int]) -> list[list[int]] | None:
    """The player's (x, y) at `frames` minus where it stood at the first of them; None where the world records none."""
    if "player_pos" not in state:
        return None
    pos = np.asarray(state["player_pos"])
    return [(pos[f] - pos[frames[0]]).astype(int).tolist() for f in frames[1:]]


def main(argv=None) -> int:
    args = parse_args(argv)
    loop_def = LOOPS[args.world]
    loop = Loop(args.n, loop_def["away"], loop_def["back"])
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    given = args.n if args.walk_given else 0
    config = SimConfig(context="autoregressive", context_frames=args.context_frames + given, context_budget=args.budget,
                       sampling_steps=args.sampling_steps, guidance_scale=args.guidance)
    runner = SimRunner(args.checkpoint, config, num_envs=args.num_envs)
    try:
        k, size = runner.k, args.size or runner.frame_size[0]
        context = num_real_frames(args.context_frames, k)  # real frames before the walk; the last is the frame left
        real = paired_rollouts(args.world, seeds, 2 * args.n, k=k, context=context, size=size, actions=loop.actions(),
                               reset_options=loop_def["options"], replace_short=True)
        episodes = real.episodes
        shown = context + given * k  # real frames the simulator starts from
        sim = runner.rollout([ep.frames[:shown] for ep in episodes], [list(ep.actions[:shown - 1]) for ep in episodes],
                             [loop.actions()[given:] for _ in episodes])
    finally:
        runner.close()
    before = np.stack([ep.frames[context - 1] for ep in episodes])
    back = np.stack([ep.frames[-1] for ep in episodes])
    scores = {name: s["psnr"] for name, s in loop_scores(before, back, sim[:, -1]).items()}
    turn, end = context - 1 + args.n * k, context - 1 + 2 * args.n * k
    rows = []
    print(f"{'seed':>7} | {'away':>8} | {'end':>8} | {'real vs before':>14} | {'sim vs before':>13} | {'sim vs real':>11} | "
          f"{'memoryless':>10}")
    for i, ep in enumerate(episodes):
        moved = displacement(ep.state, [context - 1, turn, end])
        row = {"seed": real.seeds[i], "away": None if moved is None else moved[0], "end": None if moved is None else moved[1],
               **{name: round(float(v[i]), 3) for name, v in scores.items()}}
        rows.append(row)
        print(f"{row['seed']:>7} | {str(row['away']):>8} | {str(row['end']):>8} | {row['real_return_vs_before']:14.2f} | "
              f"{row['sim_return_vs_before']:13.2f} | {row['sim_return_vs_real_return']:11.2f} | "
              f"{row.get('memoryless_vs_real_return', float('nan')):10.2f}")
    means = {name: float(np.mean(v)) for name, v in scores.items()}
    print(f"{'mean':>7} | {'':>8} | {'':>8} | {means['real_return_vs_before']:14.2f} | {means['sim_return_vs_before']:13.2f} | "
          f"{means['sim_return_vs_real_return']:11.2f} | {means.get('memoryless_vs_real_return', float('nan')):10.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "world": args.world, "n": args.n, "walk_given": args.walk_given,
                       "sampling_steps": args.sampling_steps, "guidance": args.guidance, "budget": args.budget,
                       "mean": means, "seeds": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
