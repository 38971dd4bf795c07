"""Does the simulated Crafter player turn as the real one does? python scripts/agent_facing.py CHECKPOINT [--out F]

Crafter draws its player at one place, facing the way it last moved (a move into a tree still turns it), so how the
sprite turns is the plainest sign of a move. A nearest-centroid judge, fitted on the player tile of recorded frames
with the store's `player_facing`, reads the facing from a frame; over paired real / simulated rollouts this prints how
often the simulated player faces where the real one does (the real tiles' own score is the judge's accuracy), and
the same for a player that never turns from the context's last frame (the floor a simulator must beat). "Turned"
counts only the frames whose real facing differs from the context's last one.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from worldsim.data.store import EpisodeStore
from worldsim.eval.paired import paired_rollouts
from worldsim.eval.simulated import SimRunner
from worldsim.sim.config import SimConfig

FACINGS = ((0, 1), (0, -1), (-1, 0), (1, 0))  # Crafter's player_facing (dx, dy): down, up, left, right


def facing_class(facing: np.ndarray) -> np.ndarray:
    """(N, 2) facing vectors -> (N,) class indices into FACINGS (-1 for anything else)."""
    out = np.full(len(facing), -1)
    for i, f in enumerate(FACINGS):
        out[(facing == f).all(axis=1)] = i
    return out


def fit_judge(store: EpisodeStore, box: tuple[int, int, int, int], frames: int) -> np.ndarray:
    """(4, tile pixels) mean player tile of each facing, from the store's first `frames` recorded frames."""
    top, bottom, left, right = box
    obs = store.read("obs", 0, frames)[:, top:bottom, left:right].reshape(frames, -1).astype(np.float32)
    labels = facing_class(store.read("state/player_facing", 0, frames))
    return np.stack([obs[labels == i].mean(axis=0) for i in range(len(FACINGS))])


def judge(centroids: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    flat = tiles.reshape(len(tiles), -1).astype(np.float32)
    return ((flat[:, None] - centroids[None]) ** 2).sum(-1).argmin(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--store", default="runs/s17/crafter540.zarr", help="recorded Crafter frames with player_facing")
    ap.add_argument("--box", type=int, nargs=4, default=[24, 32, 32, 40], help="player tile: top bottom left right (72x72)")
    ap.add_argument("--judge-frames", type=int, default=20_000)
    ap.add_argument("--first-seed", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16, help="latent steps rolled after the context")
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--sampling-steps", type=int, default=1)
    ap.add_argument("--out", default="bench_results/agent_facing.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    centroids = fit_judge(EpisodeStore.open(args.store), tuple(args.box), args.judge_frames)
    runner = SimRunner(args.checkpoint, SimConfig(context="autoregressive", context_budget=args.budget,
                                                  sampling_steps=args.sampling_steps), num_envs=8)
    p = paired_rollouts("crafter", list(range(args.first_seed, args.first_seed + args.seeds)), args.steps,
                        runner=runner, size=runner.frame_size[0], replace_short=True)
    top, bottom, left, right = args.box
    n, m = p.real.shape[:2]
    truth = np.stack([facing_class(ep.state["player_facing"][p.context:p.context + m]) for ep in p.episodes])
    before = np.array([facing_class(ep.state["player_facing"][p.context - 1:p.context])[0] for ep in p.episodes])
    read = {name: judge(centroids, frames[:, :, top:bottom, left:right].reshape(n * m, -1)).reshape(n, m)
            for name, frames in (("real", p.real), ("simulated", p.sim))}
    read["never turns"] = np.repeat(before[:, None], m, axis=1)
    turned = truth != before[:, None]
    table = {name: {"all": float((r == truth).mean()), "turned": float((r == truth)[turned].mean()),
                    "per_latent_step": [float((r == truth)[:, j * p.k:(j + 1) * p.k].mean()) for j in range(args.steps)]}
             for name, r in read.items()}
    print(f"player facing agreement with the real rollout ({n} seeds x {m} frames; {int(turned.sum())} frames turned)")
    for name, row in table.items():
        print(f"  {name:12s} all {row['all']:.3f}  turned {row['turned']:.3f}  per latent step "
              + " ".join(f"{x:.2f}" for x in row["per_latent_step"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"checkpoint": args.checkpoint, "seeds": p.seeds, "budget": args.budget,
                                          "turned_frames": int(turned.sum()), "agreement": table}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
