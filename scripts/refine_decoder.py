"""Fine-tune an export's decoder on what its DiT draws: python scripts/refine_decoder.py EXPORT STORE OUT [--steps N].

The probe world's DiT loses small balls: a one-step sample from real context leaves a faint ball in the latent, the
palette decoder draws a faint ball as background, and once drawn as background it is gone for good (a simulator
served with re-encoding reads its own frames back). Here the decoder learns to draw what the real latent would
have drawn from the DiT's own one-step sample: windows of `--window` cached latent frames (held-out episodes left
out), the last one replaced by the DiT's one-step sample from the real frames before it (the simulator's setting),
decoded, and fitted to the frozen decoder's frames of the real latents (colours snapped to the palette: the
autoencoder's reconstruction of the real frames, 36 dB) with the autoencoder's own loss (L1 + MSE + the palette's
cross-entropy). The context frames, decoded from real latents, are in the loss too, so the decoder keeps them.
The encoder, the latents and the DiT do not change (the latent cache stays valid). Prints held-out figures every
`--eval-every` steps and writes OUT (the export with the new decoder) and OUT/refine_decoder.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from worldsim.diffusion.samplers import sample_euler  # noqa: E402
from worldsim.export import load_export, write_export_like  # noqa: E402
from worldsim.metrics import psnr  # noqa: E402
from worldsim.models.palette import palette_targets  # noqa: E402
from worldsim.train.latent_cache import LatentWindowDataset, open_cache  # noqa: E402
from worldsim.train.validation import holdout_episodes  # noqa: E402


def batch_of(data: LatentWindowDataset, items: list[int]) -> dict[str, torch.Tensor]:
    rows = [data[i] for i in items]
    return {key: torch.stack([torch.as_tensor(r[key]) for r in rows]) for key in ("latents", "action", "action_mask")}


def decoded(ae, dit, batch: dict, generator: torch.Generator, decoder) -> tuple[torch.Tensor, ...]:
    """(frames of the real latents with the frozen decoder, snapped; frames of [real context, DiT sample] with
    `decoder`; their palette logits)."""
    z = batch["latents"]  # (B, T', C, h, w) normalised
    with torch.no_grad():
        new = sample_euler(dit, (z.shape[0], 1, *z.shape[2:]), steps=1, generator=generator, context=z[:, :-1],
                           actions=batch["action"], action_mask=batch["action_mask"])
        target = ae.decode(ae.denormalize(z)).clamp(-1, 1)  # (B, T, 3, H, W)
        index = palette_targets(target, ae.cfg.palette)  # (B, T, H, W)
        colours = torch.tensor(ae.cfg.palette, dtype=target.dtype) / 127.5 - 1.0  # (K, 3)
        target = colours[index].permute(0, 1, 4, 2, 3)  # snapped
    mixed = torch.cat([z[:, :-1], new.to(z.dtype)], dim=1)
    x, logits = decoder(ae.denormalize(mixed).permute(0, 2, 1, 3, 4), logits=True)  # (B, 3, T, H, W), (B, K, T, H, W)
    return target, index, x.permute(0, 2, 1, 3, 4), logits.permute(0, 2, 1, 3, 4)


def loss_of(ae, target, index, frames, logits, last: int) -> tuple[torch.Tensor, dict]:
    err = frames - target
    ce = F.cross_entropy(logits.flatten(0, 1), index.flatten(0, 1), reduction="none")  # (B*T, H, W)
    cfg = ae.cfg
    loss = cfg.l1_weight * err.abs().mean() + cfg.mse_weight * err.pow(2).mean() + cfg.palette_weight * ce.mean()
    with torch.no_grad():
        new = slice(frames.shape[1] - last, None)
        wrong = (logits[:, new].argmax(dim=2) != index[:, new]).float()
        common = torch.bincount(index.flatten(), minlength=logits.shape[2]).topk(2).indices  # background, occluder
        ball = ~torch.isin(index[:, new], common)
        logs = {"loss": float(loss), "psnr_new": float(psnr(frames[:, new].clamp(-1, 1), target[:, new], data_range=2.0).mean()),
                "wrong_new": float(wrong.mean()), "wrong_ball_new": float(wrong[ball].mean()) if ball.any() else 0.0}
    return loss, logs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export")
    ap.add_argument("store")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--window", type=int, default=5, help="latent frames per window: the last is the DiT's sample")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-windows", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models, meta = load_export(args.export)
    ae, dit = models["autoencoder"].eval(), models["dit"].eval()
    if not ae.cfg.palette:
        sys.exit("refine_decoder: the autoencoder has no palette (a world drawn with few colours is what this is for)")
    cache = open_cache(args.store, ae)
    if cache is None:
        sys.exit(f"refine_decoder: {args.store} has no latent cache for this autoencoder: train a DiT on it first")
    held = holdout_episodes(cache.episodes, None)
    train = LatentWindowDataset(cache, args.store, args.window, episodes=sorted(set(range(cache.episodes)) - set(held)))
    test = LatentWindowDataset(cache, args.store, args.window, episodes=held)
    for p in dit.parameters():
        p.requires_grad_(False)
    decoder = copy.deepcopy(ae.decoder).train()
    optim = torch.optim.AdamW(decoder.parameters(), lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / 30)
                                                 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / args.steps)).item()))
    last = ae.cfg.temporal_factor
    rng = torch.Generator().manual_seed(args.seed)
    eval_items = torch.linspace(0, len(test) - 1, args.eval_windows).long().tolist()

    def evaluate(which) -> dict:
        g = torch.Generator().manual_seed(1234)
        logs = []
        with torch.no_grad():
            for i in range(0, len(eval_items), args.batch):
                out = decoded(ae, dit, batch_of(test, eval_items[i:i + args.batch]), g, which)
                logs.append(loss_of(ae, *out, last)[1])
        return {k: sum(d[k] for d in logs) / len(logs) for k in logs[0]}

    curve = [{"step": 0, **evaluate(ae.decoder)}]
    print(f"step 0: held out {curve[-1]}", flush=True)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        items = torch.randint(0, len(train), (args.batch,), generator=rng).tolist()
        loss, logs = loss_of(ae, *decoded(ae, dit, batch_of(train, items), rng, decoder), last)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        optim.step()
        schedule.step()
        if step % 50 == 0:
            print(f"step {step}: train {logs} ({time.perf_counter() - start:.0f} s)", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            curve.append({"step": step, "seconds": time.perf_counter() - start, **evaluate(decoder.eval())})
            decoder.train()
            print(f"step {step}: held out {curve[-1]}", flush=True)
            refined = copy.deepcopy(ae)
            refined.decoder.load_state_dict(decoder.state_dict())
            folder = write_export_like(args.out, refined, dit, meta, refined_decoder={
                "from": str(args.export), "store": str(args.store), "steps": step, "window": args.window, "lr": args.lr})
            (folder / "refine_decoder.json").write_text(json.dumps({"args": vars(args), "curve": curve}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
