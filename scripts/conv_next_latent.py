"""Diagnostic: is the DiT what caps the next frame? A plain convolutional net regresses the next latent frame
from the three before it and the frame's actions, on a store's cached latents, and is scored on held-out windows
against the DiT's own one-step estimate of the same frames (from 8 real context frames) and against copying.

    python scripts/conv_next_latent.py DIT_EXPORT STORE [--steps 3000] [--width 64] [--out F.json]

The net: a 3x3 convolution of the three latents and the actions (one-hot, broadcast over the frame), 8 residual
blocks (GroupNorm, SiLU, dilations 1-2-4-8-1-2-4-1, so each latent pixel sees the whole 16x16 probe latent), a 3x3
output convolution, added to the newest latent (so it starts as copying). AdamW lr 1e-3, cosine, batch 64,
mean squared error. Held out: the episodes `worldsim train` holds out (`holdout_episodes`), the last 4 frames of
512 evenly spaced 9-frame windows. Writes the curve (held-out MSE against process CPU seconds) as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from worldsim.models.motion import PRIOR_DILATIONS, PriorBlock

class NextLatentNet(nn.Module):
    """(B, 3C, h, w) latents and (B, A) actions -> the next latent (B, C, h, w), as newest + a residual."""

    def __init__(self, channels: int, actions: int, width: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3 * channels + actions, width, 3, padding=1)
        self.blocks = nn.Sequential(*(PriorBlock(width, d) for d in PRIOR_DILATIONS))  # the conv prior's blocks
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, latents: torch.Tensor, actions: torch.Tensor, newest: torch.Tensor) -> torch.Tensor:
        a = actions[:, :, None, None].expand(-1, -1, *latents.shape[-2:])
        return newest + self.out(F.silu(self.blocks(self.inp(torch.cat([latents, a], 1)))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export")
    ap.add_argument("store")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--held-windows", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from worldsim.export import ExportError, load_export
    from worldsim.train.latent_cache import LatentWindowDataset, open_cache
    from worldsim.train.validation import holdout_episodes

    torch.set_num_threads(args.threads)
    try:
        models, _ = load_export(args.export)
    except (ExportError, OSError) as e:
        sys.exit(f"conv_next_latent: {e}")
    dit = models.get("dit")
    if dit is None or dit.action_space is None or not hasattr(dit.action_space, "n"):
        sys.exit("conv_next_latent: the export must hold a DiT with Discrete actions")
    cache = open_cache(args.store, models["autoencoder"])
    if cache is None:
        sys.exit(f"conv_next_latent: {args.store} has no latent cache of this autoencoder (worldsim train builds it)")
    held = holdout_episodes(cache.episodes, None)
    train = LatentWindowDataset(cache, args.store, 4, episodes=[e for e in range(cache.episodes) if e not in set(held)])
    test = LatentWindowDataset(cache, args.store, 9, episodes=held)
    if not len(train) or not len(test):
        sys.exit("conv_next_latent: the store has too few frames for 4-frame training and 9-frame held-out windows")
    latents = torch.from_numpy(np.asarray(cache.latents[:], np.float32))
    n_actions, k = int(dit.action_space.n), train.action.shape[1]

    def batch(first: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Inputs (three latents, actions, newest) and target for windows whose first frame is `first`."""
        x = torch.cat([latents[first], latents[first + 1], latents[first + 2]], 1)
        # (both datasets index the cache's actions by latent frame, like its latents)
        a = F.one_hot(train.action[first + 3][:, :, 0].long(), n_actions).float()  # (B, k, A)
        a = (a * train.action_mask[first + 3][:, :, None].float()).flatten(1)
        return x, a, latents[first + 2], latents[first + 3]

    held_ix = torch.linspace(0, len(test) - 1, min(args.held_windows, len(test))).long()
    held_batch = batch(torch.from_numpy(test.starts[held_ix.numpy()]) + 5)  # the last 4 frames of each window
    with torch.no_grad():  # the DiT's one-step clean estimate of the same frames, from 8 real context frames
        errors = []
        for i in range(0, len(held_ix), 64):
            items = [test[int(j)] for j in held_ix[i:i + 64]]
            x0, act, mask = (torch.stack([it[key] for it in items]) for key in ("latents", "action", "action_mask"))
            level = torch.zeros(x0.shape[:2])
            level[:, -1] = 1.0
            noise = torch.randn(x0[:, -1:].shape, generator=torch.Generator().manual_seed(i))
            estimate = -dit(torch.cat([x0[:, :-1], noise], 1), level, act, mask).prediction[:, -1].float()
            errors.append((estimate - x0[:, -1]).pow(2).mean(dim=(1, 2, 3)))
        dit_mse = float(torch.cat(errors).mean())
    copy_mse = float((held_batch[2] - held_batch[3]).pow(2).mean())
    net = NextLatentNet(latents.shape[1], k * n_actions, args.width)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, args.steps))
    generator = torch.Generator().manual_seed(0)
    curve, cpu0 = [], time.process_time()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            with torch.no_grad():
                mse = float((net(*held_batch[:3]) - held_batch[3]).pow(2).mean())
            curve.append({"step": step, "cpu_s": round(time.process_time() - cpu0, 1), "held_out_mse": mse})
            print(f"[conv_next_latent] step {step}: held-out mse {mse:.4f} (the DiT's one-step estimate {dit_mse:.4f}, "
                  f"copying {copy_mse:.4f})", flush=True)
        if step == args.steps:
            break
        x, a, newest, target = batch(torch.from_numpy(train.starts[torch.randint(0, len(train), (args.batch,),
                                                                                  generator=generator).numpy()]))
        loss = (net(x, a, newest) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    result = {"export": args.export, "store": args.store, "steps": args.steps, "width": args.width,
              "batch": args.batch, "params": sum(p.numel() for p in net.parameters()),
              "dit_params": sum(p.numel() for p in dit.parameters()), "held_out_windows": len(held_ix),
              "dit_one_step_mse": dit_mse, "copy_mse": copy_mse, "curve": curve}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))


if __name__ == "__main__":
    main()
