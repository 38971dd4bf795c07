"""Does a Crafter DiT scroll the view when a double move does? A diagnosis of action following on held-out windows.

For held-out latent frames whose two actions are the same move, it classifies how far (0, 1 or 2 tiles, 2 latent
pixels each) the real next latent, the DiT's sample of it (from the real context) and, for DiTs with a motion kernel,
the kernel-moved previous latent are shifted from the previous latent in the move's direction (the shift with the
least interior error), and reports the counts by what really happened; with a motion gate, its mean probability,
and with `motion_composite`, the mean mask at t = 1.

    python scripts/scroll_diagnosis.py EXPORT [--store runs/pretrained/crafter72.zarr] [--steps 1] [--out F.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

DIRECTIONS = {1: (0, 1), 2: (0, -1), 3: (1, 0), 4: (-1, 0)}  # Crafter's moves: the view's content shifts this way


def tiles_moved(previous: torch.Tensor, following: torch.Tensor, direction: tuple[int, int]) -> int:
    """0, 1 or 2: the whole-tile shift of `previous` in `direction` that best matches `following`, compared on
    the 18 x 18 latent's rows 4-11 and columns 4-13: away from the borders a shift rolls in, and above the
    inventory (the bottom rows of Crafter's view), which never scrolls."""
    errors = [(torch.roll(previous, (2 * s * direction[0], 2 * s * direction[1]), dims=(-2, -1)) - following)
              [..., 4:12, 4:14].pow(2).mean() for s in range(3)]
    return int(torch.stack(errors).argmin())


def table(real: np.ndarray, other: np.ndarray) -> dict[str, list[int]]:
    return {f"real_{r}": [int(((real == r) & (other == s)).sum()) for s in range(3)] for r in range(3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export")
    ap.add_argument("--store", default="runs/pretrained/crafter72.zarr")
    ap.add_argument("--steps", type=int, default=1, help="sampling steps")
    ap.add_argument("--frames", type=int, default=256, help="held-out double moves drawn")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from worldsim.diffusion.samplers import sample_euler
    from worldsim.export import load_export
    from worldsim.train.latent_cache import LatentWindowDataset, open_cache
    from worldsim.train.validation import holdout_episodes

    torch.set_num_threads(1)
    models, _ = load_export(args.export)
    autoencoder, dit = models["autoencoder"], models["dit"]
    cache = open_cache(args.store, autoencoder)
    if cache is None:
        raise SystemExit(f"{args.store} has no latent cache of {args.export}'s autoencoder (worldsim train builds it)")
    data = LatentWindowDataset(cache, args.store, 9, holdout_episodes(cache.episodes, None))
    picks = [i for i in range(len(data)) if data[i]["action_mask"][-1].all()
             and int(data[i]["action"][-1, 0, 0]) == int(data[i]["action"][-1, 1, 0]) in DIRECTIONS]
    picks = np.random.default_rng(0).choice(picks, size=min(args.frames, len(picks)), replace=False)
    items = [data[int(i)] for i in picks]
    x0 = torch.stack([it["latents"] for it in items])
    actions, mask = torch.stack([it["action"] for it in items]), torch.stack([it["action_mask"] for it in items])
    direction = [DIRECTIONS[int(it["action"][-1, 0, 0])] for it in items]
    noise = torch.randn(x0[:, -1:].shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        sampled = torch.cat([sample_euler(dit, tuple(noise[b:b + 32].shape), steps=args.steps, noise=noise[b:b + 32],
                                          context=x0[b:b + 32, :-1], actions=actions[b:b + 32],
                                          action_mask=mask[b:b + 32]) for b in range(0, len(x0), 32)])[:, 0]
    real = np.array([tiles_moved(x0[j, -2], x0[j, -1], d) for j, d in enumerate(direction)])
    sim = np.array([tiles_moved(x0[j, -2], sampled[j].float(), d) for j, d in enumerate(direction)])
    result = {"export": args.export, "frames": len(items), "sampling_steps": args.steps, "sample": table(real, sim)}
    if dit.motion is not None:
        with torch.no_grad():
            cond = dit.action_encoder(actions[:, -1:], mask[:, -1:])
            logit = dit.motion.gate_logit(x0[:, -2:-1], cond) if dit.motion.gate else None
            moved = dit.motion(x0[:, -2:-1], cond, logit)[:, 0]
        kernel = np.array([tiles_moved(x0[j, -2], moved[j], d) for j, d in enumerate(direction)])
        result["kernel"] = table(real, kernel)
        if logit is not None:
            p = torch.sigmoid(logit[:, 0]).numpy()
            result["gate_mean_p"] = {f"real_{r}": round(float(p[real == r].mean()), 3) for r in range(3) if (real == r).any()}
    if getattr(dit, "composite", None) is not None:
        level = torch.zeros(x0.shape[:2])
        level[:, -1] = 1
        with torch.no_grad():
            m = dit(torch.cat([x0[:, :-1], noise], 1), level, actions, mask).composite_mask[:, -1, 0]
        result["composite_mask_t1"] = {f"real_{r}": round(float(m[torch.from_numpy(real == r)].mean()), 3)
                                       for r in range(3) if (real == r).any()}
    print(f"{args.export}: {len(items)} held-out double moves, {args.steps} sampling step(s); rows: really moved "
          "0 / 1 / 2 tiles, columns: moved 0 / 1 / 2 tiles")
    for what in ("sample", "kernel"):
        if what in result:
            print(f"  {what:7s} " + "  ".join(f"{k} {v}" for k, v in result[what].items()))
    for key in ("gate_mean_p", "composite_mask_t1"):
        if key in result:
            print(f"  {key}: {result[key]}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
