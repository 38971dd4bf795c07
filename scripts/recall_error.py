"""How well DiTs draw what only memory can: the one-step error on the patches seen before but not in the last frame.

A look-away-and-back evaluation mixes memory with everything else a rollout gets wrong. This isolates it: on held-out
windows of a store's latent cache, each DiT denoises the window's last latent frame in one sampling step from all the
real frames before it (as a simulator at a budget that holds them), and the squared error of that estimate is split
into the latent pixels whose place was on screen in an earlier frame of the window but not in the frame before
(`worldsim.models.camera.recalled_patches`: the way back of a walk) and all the others. Copying the previous
latent is scored beside them. (A patch-level memory baseline does not work here: a latent frame covers k = 2 real
frames, so a move in its second one leaves a blend of both views, not a shifted copy.)

The camera comes from the actions (`--moves`, Crafter's at 72x72 by default), so a blocked move counts as made, for
every model alike. With `--position STATE` (Crafter: player_pos, the player's (x, y) in tiles) it is read from the
store instead, so the split follows the moves that happened; `--scroll-rows` leaves the rows that do not scroll
(Crafter's inventory) out of it, and `--model-camera` gives DiTs with world heads that camera as well. `--memoryless`
scores each DiT a second time given only the frame before: the error of a model that cannot recall, against which
the full-context error shows how much it does. `--split` takes a composited estimate apart: the DiT's own estimate,
the conv prior's guess (which reads only the two frames before, so cannot recall) and the mask between them.

    python scripts/recall_error.py --store STORE shipped=worldsim/pretrained/crafter world=runs/w/export \
        --windows 256 --out recall.json

Prints a table and writes JSON. Only windows with recalled pixels in their last frame are scored.
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import numpy as np
import torch

from worldsim.diffusion.samplers import sample_euler
from worldsim.export import load_export
from worldsim.models.camera import camera_positions, camera_table, recalled_patches
from worldsim.pretrained import resolve_checkpoint
from worldsim.train.latent_cache import LatentWindowDataset, autoencoder_key, open_cache
from worldsim.train.validation import holdout_episodes

CRAFTER_MOVES = [[1, 0, -1], [2, 0, 1], [3, -1, 0], [4, 1, 0]]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="NAME=EXPORT (DiT exports on the same autoencoder)")
    p.add_argument("--store", required=True, help="episode store whose latent cache holds the windows")
    p.add_argument("--frames", type=int, default=13, help="latent frames a window (the last is denoised)")
    p.add_argument("--windows", type=int, default=256, help="held-out windows tried (those with recall are scored)")
    p.add_argument("--moves", type=json.loads, default=CRAFTER_MOVES, help="[action, d_row, d_col] per scrolling action")
    p.add_argument("--scroll-rows", type=int, default=None,
                   help="patch rows that scroll with the view, from the top (Crafter: 7; its inventory below stays)")
    p.add_argument("--position", default=None, help="store state holding the view's (x, y) in patches (Crafter: player_pos)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-camera", action="store_true",
                   help="with --position: give DiTs with world heads that camera too (as `camera_state` trained them)")
    p.add_argument("--memoryless", action="store_true",
                   help="also score each DiT given only the frame before (NAME/last): what it draws with nothing to recall")
    p.add_argument("--split", action="store_true",
                   help="for DiTs that composite a conv prior's guess: also score the DiT's own estimate (NAME:dit) and "
                        "the guess (NAME:prior) apart, and report the mean mask toward the guess")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="JSON file to write")
    args = p.parse_args(argv)
    for m in args.models:
        if "=" not in m:
            p.error(f"models are NAME=EXPORT, got {m!r}")
    if args.model_camera and not args.position:
        p.error("--model-camera needs --position")
    if args.frames < 3:
        p.error("--frames must be >= 3 (recall needs a frame before the previous one)")
    return args


def held_out_windows(store: str, autoencoder, frames: int, count: int, seed: int) -> tuple[LatentWindowDataset, list[int]]:
    """The dataset over the held-out episodes (as training holds them out) and `count` window indices drawn from it."""
    cache = open_cache(store, autoencoder, autoencoder_key(autoencoder))
    if cache is None:
        raise SystemExit(f"{store} has no latent cache for this autoencoder: train on it once, or build_cache")
    data = LatentWindowDataset(cache, store, frames, episodes=holdout_episodes(cache.episodes, None))
    if len(data) == 0:
        raise SystemExit(f"{store}: no held-out window of {frames} latent frames")
    rng = np.random.default_rng(seed)
    return data, sorted(rng.choice(len(data), size=min(count, len(data)), replace=False).tolist())


def composite_parts(dit, x0: torch.Tensor, noise: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor):
    """A prior-composited DiT's one-step estimate of the last frame and its parts, from one forward: (the estimate,
    its own estimate, the conv prior's guess, the mask m toward the guess), each (B, C or 1, h, w). From pure noise
    the clean estimate is -v (what a one-step `sample_euler` returns) and it is (1 - m) x0_dit + m guess
    (`worldsim.models.motion.composite_v` at sigma = 1)."""
    level = torch.zeros(x0.shape[:2])
    level[:, -1] = 1.0
    out = dit(torch.cat([x0[:, :-1], noise], 1), level, actions, mask, None)
    weight, guess = out.composite_mask[:, -1].float(), out.prior_guess[:, -1].float()
    sample = -out.prediction[:, -1].float()
    return sample, (sample - weight * guess) / (1 - weight).clamp_min(1e-3), guess, weight


@torch.no_grad()
def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    named = [m.split("=", 1) for m in args.models]
    models = {name: load_export(resolve_checkpoint(path))[0] for name, path in named}
    first = next(iter(models.values()))
    data, picks = held_out_windows(args.store, first["autoencoder"], args.frames, args.windows, args.seed)
    dit0 = first["dit"]
    positions = None
    if args.position:
        from worldsim.data.store import EpisodeStore

        store = EpisodeStore.open(args.store, "r")
        try:
            if args.position not in store.layout.state_spec:
                raise SystemExit(f"--position {args.position}: {args.store} records no such state")
            positions = store.read(f"state/{args.position}", 0, store.num_frames).astype(np.float32)  # (rows, 2): x, y
        finally:
            store.close()
    table = camera_table(args.moves, int(dit0.action_space.n))
    p = dit0.config.patch_size
    composited = [name for name, m in models.items() if args.split and m["dit"].config.prior_composite]
    names = [*models, *([f"{name}/last" for name in models] if args.memoryless else []),
             *[f"{name}:{part}" for name in composited for part in ("dit", "prior")], "copy"]
    masks = {name: {"recalled": 0.0, "other": 0.0} for name in composited}
    sums = {name: {"recalled": 0.0, "other": 0.0} for name in names}
    counts = {"recalled": 0.0, "other": 0.0, "windows": 0}
    start = time.time()
    for b in range(0, len(picks), args.batch):
        items = [data[i] for i in picks[b:b + args.batch]]
        x0 = torch.stack([it["latents"] for it in items]).float()  # (B, T, C, h, w)
        actions = torch.stack([it["action"] for it in items])
        mask = torch.stack([it["action_mask"] for it in items])
        if positions is None:
            camera = camera_positions(actions, mask, table)
        else:  # the view's origin at each latent frame's last real frame: (row, col) = (y, x)
            first_rows = [data.rows(i)[0] for i in picks[b:b + args.batch]]
            camera = torch.stack([torch.from_numpy(positions[[r + j * data.k for j in range(args.frames)]][:, ::-1].copy())
                                  for r in first_rows])
        rows = x0.shape[-2] // p
        grid = recalled_patches(camera, args.scroll_rows or rows, x0.shape[-1] // p)[:, -1]
        grid = torch.cat([grid, grid.new_zeros(grid.shape[0], rows - grid.shape[1], grid.shape[2])], dim=1)
        recalled = grid.repeat_interleave(p, 1).repeat_interleave(p, 2)[:, None].float()  # (B, 1, h, w)
        keep = recalled.flatten(1).any(1)
        if not keep.any():
            continue
        x0, actions, mask, recalled, camera = x0[keep], actions[keep], mask[keep], recalled[keep], camera[keep]
        counts["windows"] += int(keep.sum())
        counts["recalled"] += float(recalled.sum()) * x0.shape[2]
        counts["other"] += float((1 - recalled).sum()) * x0.shape[2]
        noise = torch.randn(x0[:, -1:].shape, generator=torch.Generator().manual_seed(args.seed + b))
        guesses = {"copy": x0[:, -2]}
        for name, m in models.items():
            dit = m["dit"]
            if args.model_camera and dit.config.world_heads:
                dit = functools.partial(dit, camera=camera - camera[:, :1])
            if name in composited:  # the sample and its parts from one forward
                guesses[name], guesses[f"{name}:dit"], guesses[f"{name}:prior"], weight = composite_parts(
                    dit, x0, noise, actions, mask)
                masks[name]["recalled"] += float((weight * recalled).sum())
                masks[name]["other"] += float((weight * (1 - recalled)).sum())
            else:
                guesses[name] = sample_euler(dit, tuple(noise.shape), steps=1, noise=noise, context=x0[:, :-1],
                                             actions=actions, action_mask=mask)[:, 0]
            if args.memoryless:  # the same DiT with only the frame before: it cannot recall, so this is its prior
                guesses[f"{name}/last"] = sample_euler(m["dit"], tuple(noise.shape), steps=1, noise=noise, context=x0[:, -2:-1],
                                                       actions=actions[:, -2:], action_mask=mask[:, -2:])[:, 0]
        for name, guess in guesses.items():
            err = (guess - x0[:, -1]).pow(2)  # (B, C, h, w)
            sums[name]["recalled"] += float((err * recalled).sum())
            sums[name]["other"] += float((err * (1 - recalled)).sum())
    if not counts["windows"]:
        raise SystemExit("no window had recalled pixels in its last frame: try more --windows or longer --frames")
    rows = {name: {part: s[part] / counts[part] for part in ("recalled", "other")} for name, s in sums.items()}
    print(f"{counts['windows']} of {len(picks)} held-out windows of {args.frames} latent frames had recalled pixels "
          f"({counts['recalled'] / (counts['recalled'] + counts['other']):.1%} of their last frames' pixels); "
          f"{time.time() - start:.0f} s")
    print(f"{'model':>12} | {'recalled MSE':>12} | {'other MSE':>10}")
    for name, r in rows.items():
        print(f"{name:>12} | {r['recalled']:12.4f} | {r['other']:10.4f}")
    pixels = {part: counts[part] / dit0.config.latent_channels for part in ("recalled", "other")}  # counts are per channel
    mask_means = {name: {part: v[part] / pixels[part] for part in v} for name, v in masks.items()}
    for name, v in mask_means.items():
        print(f"{name}: mean mask toward the prior's guess {v['recalled']:.3f} on recalled pixels, {v['other']:.3f} on the others")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"store": args.store, "frames": args.frames, "windows_tried": len(picks), "windows": counts["windows"],
                       "recalled_share": counts["recalled"] / (counts["recalled"] + counts["other"]),
                       "models": dict(named), "mse": rows, **({"mask_toward_prior": mask_means} if mask_means else {})},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
