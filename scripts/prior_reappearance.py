"""Does a conv prior bring back what went out of sight? Fit a prior reading F frames on a probe store's cached
latents and score its guess where a hidden ball comes back into view (session 21's prior-frames lever).

    python scripts/prior_reappearance.py DIT_EXPORT STORE OUT [--frames 8] [--steps 2500] [--events 0.25] [--json F]

A reappearance event is a held-out latent frame in which a ball that was fully hidden (state ``visible`` <= 0) at
the last row of one of the two latent frames before it shows again (``visible`` > 0.2); its error is the squared
error of the prior's guess over the 5 x 5 latent pixels around the ball, beside copying the previous latent there.
`--events` f > 0 draws that fraction of each training batch from the training episodes' events (the rest at
random); half of each batch keeps only the m newest frames (m from 2..F) as a rollout's first steps do. The
export written to OUT (at the end) is DIT_EXPORT with the fitted prior (`DiTConfig.prior_frames`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch

from worldsim.data.store import EpisodeStore
from worldsim.envs.probe.physics import BOX
from worldsim.envs.probe.render import world_to_pixel
from worldsim.export import ExportError, load_export, write_export_like
from worldsim.train.latent_cache import LatentWindowDataset, open_cache
from worldsim.train.motion_field import field_dit, truncated_history
from worldsim.train.validation import holdout_episodes


def reappearances(cache, store: str, episodes: list[int], frames: int, size: tuple[int, int]) -> list[tuple]:
    """(latent frame, row, col) of every reappearance in `episodes` with `frames` latent frames before it."""
    with EpisodeStore.open(store, "r") as s:
        vis, pos = s.read("state/visible", 0, s.num_frames), s.read("state/position", 0, s.num_frames)
    scale = (size[0] / cache.latents.shape[-2], size[1] / cache.latents.shape[-1])
    begins = np.concatenate([[0], cache.episode_ends[:-1]])
    out = []
    for e in episodes:
        r0, b0 = int(cache.row_starts[e]), int(begins[e])
        for j in range(b0 + frames, int(cache.episode_ends[e])):
            row = r0 + (j - b0) * cache.k
            hidden = (vis[[row - cache.k, row - 2 * cache.k]] <= 0).any(axis=0)
            for b in np.flatnonzero(hidden & (vis[row] > 0.2)):
                r, c = world_to_pixel(pos[row, b], size, *BOX)
                out.append((j, int(r / scale[0]), int(c / scale[1])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dit_export")
    parser.add_argument("store")
    parser.add_argument("out")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--lr", type=float, default=5e-4, help="peak, after 100 warm-up steps, cosine to 0")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--events", type=float, default=0.0, help="fraction of each batch drawn from events")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--history", type=int, default=None,
                        help="score events with at least this many latent frames before them (default --frames), "
                             "so priors of different frames are scored on the same events")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        models, meta = load_export(args.dit_export)
        if "dit" not in models or not models["dit"].config.conv_prior:
            raise ValueError(f"{args.dit_export} has no DiT with a conv prior")
        dit = field_dit(models["dit"], 0, 0, "prior", models["dit"].config.prior_heads, args.frames)
        cache = open_cache(args.store, models["autoencoder"])
        if cache is None:
            raise ValueError(f"{args.store} has no latent cache of {args.dit_export}'s autoencoder")
    except (ValueError, OSError, ExportError) as e:
        sys.exit(f"prior_reappearance: {e}")
    dit.requires_grad_(False)
    prior, frames = dit.prior, args.frames
    held = holdout_episodes(cache.episodes, None)
    train_eps = sorted(set(range(cache.episodes)) - set(held))
    data = {n: LatentWindowDataset(cache, args.store, frames=frames + 1, episodes=eps)
            for n, eps in (("train", train_eps), ("held", held))}
    latents = torch.from_numpy(np.asarray(cache.latents[:], np.float32))
    size = tuple(meta["frame_size"])
    events = reappearances(cache, args.store, held, max(frames, args.history or frames), size)
    train_events = np.array(sorted({j for j, _, _ in reappearances(cache, args.store, train_eps, frames, size)}))
    print(f"{len(events)} held-out reappearances, {len(train_events)} training frames with one", flush=True)
    gen = torch.Generator().manual_seed(0)

    def guess(target: torch.Tensor, train: bool = False) -> torch.Tensor:
        past = [latents[target - d][:, None] for d in range(1, frames + 1)]
        if train:
            past = truncated_history(past, gen)
        actions = data["train"]  # its per-frame actions cover every episode of the store, held-out ones too
        cond = dit.action_encoder(actions.action[target][:, None], actions.action_mask[target][:, None])
        older = torch.stack(past[2:], 2) if frames > 2 else None
        return prior(past[0], past[1], cond, older)[:, 0]

    held_ix = torch.linspace(0, len(data["held"].starts) - 1, 2048).long()
    curve = []

    def evaluate(step: int) -> None:
        with torch.no_grad():
            target = torch.from_numpy(data["held"].starts[held_ix.numpy()]) + frames
            mse = float((guess(target) - latents[target]).pow(2).mean())
            at = torch.tensor([j for j, _, _ in events])
            g = guess(at)
            err, copy = [], []
            for i, (j, r, c) in enumerate(events):
                box = (slice(None), slice(max(r - 2, 0), r + 3), slice(max(c - 2, 0), c + 3))
                err.append(float((g[i][box] - latents[j][box]).pow(2).mean()))
                copy.append(float((latents[j - 1][box] - latents[j][box]).pow(2).mean()))
        curve.append({"step": step, "cpu_s": round(time.process_time(), 1), "held_out_prior_mse": round(mse, 5),
                      "reappear_mse": round(float(np.mean(err)), 4), "reappear_copy_mse": round(float(np.mean(copy)), 4)})
        print(curve[-1], flush=True)

    params = list(prior.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=args.lr)
    evaluate(0)
    starts = data["train"].starts
    for step in range(1, args.steps + 1):
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, step / 100) * 0.5 * (1 + math.cos(math.pi * (step - 1) / args.steps))
        target = torch.from_numpy(starts[torch.randint(0, len(starts), (args.batch,), generator=gen).numpy()]) + frames
        m = int(args.events * args.batch)
        if m:
            target[-m:] = torch.from_numpy(train_events[torch.randint(0, len(train_events), (m,), generator=gen).numpy()])
        loss = (guess(target, train=True) - latents[target]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step)
    write_export_like(args.out, models["autoencoder"], dit.requires_grad_(False).eval(), meta,
                      conv_prior_fit={"from": args.dit_export, "frames": frames, "steps": args.steps,
                                      "events": args.events, "script": "scripts/prior_reappearance.py"})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"frames": frames, "events": args.events, "curve": curve}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
