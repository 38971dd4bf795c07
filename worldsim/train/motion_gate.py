"""Fit a DiT's motion gate on its own, before the DiT trains with it.

The gate (`DiTConfig.motion_gate`) reads the previous latent frame and the frame's actions and predicts
whether a recorded state changes over the frame (Crafter: does the player's cell change, that is, does the
move succeed). Inside DiT training it sees a few dozen frames a step at the DiT's learning rate and, after
3,000 steps, was right on only 75% of held-out Crafter moves, too unsure to pick the kernel. Fitted alone on
every cached latent frame, with the rest of the DiT frozen (batch 256, lr 1e-3), it was right on 90% of them
after 3,000 steps, 11 CPU-minutes (the commoner answer: 53%; `docs/bench/motion_gate_fit_crafter.json`).

    python scripts/fit_motion_gate.py DIT_EXPORT STORE OUT [--key player_pos] [--width 32] [--steps 3000]

A DiT without a gate gets one of `width` channels (the rest of its weights unchanged); the export written to
OUT is the input export with the fitted gate, ready for `worldsim train init_from=OUT
+model_overrides.motion_gate=WIDTH objective.state_change_key=KEY`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from worldsim.export import load_export, write_export_like
from worldsim.models.dit import DiT
from worldsim.train.latent_cache import LatentWindowDataset, open_cache
from worldsim.train.validation import holdout_episodes


def gated_dit(dit: DiT, width: int) -> DiT:
    """`dit` itself if it has a motion gate, else a copy with a fresh gate of `width` channels (kernel unchanged)."""
    if dit.motion is None:
        raise ValueError("this DiT has no motion kernel (motion_radius = 0): there is nothing for a gate to open")
    if dit.motion.gate:
        return dit
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    new = DiT(dataclasses.replace(dit.config, motion_gate=width))
    missing, unexpected = new.load_state_dict(dit.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("motion.gate_") for name in missing), (missing, unexpected)
    new.motion.reset_gate()
    return new


class GateExamples(NamedTuple):
    """Every 2-frame window of a dataset whose second frame has a known state change."""

    previous: np.ndarray  # (N,) global index of the first frame's latent (the next one follows it)
    actions: torch.Tensor  # (N, k, D) the second frame's packed actions
    mask: torch.Tensor  # (N, k)
    changed: torch.Tensor  # (N,) 0/1


def gate_examples(data: LatentWindowDataset) -> GateExamples:
    """The `GateExamples` of `data` (built with `state_change`)."""
    nxt = torch.from_numpy(data.starts + 1)
    nxt = nxt[~torch.isnan(data.state_change[nxt])]
    return GateExamples((nxt - 1).numpy(), data.action[nxt], data.action_mask[nxt], data.state_change[nxt])


def acting_actions(actions: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
    """The discrete actions that change the state (Crafter's moves): more than 5% of the frames made of that action
    alone (actions (N, k, D), first packed component) change it (changed (N,) 0/1). The frames with one of them are
    where the gate has something to decide."""
    chosen = actions[:, :, 0].long()  # (N, k)
    pure = (chosen == chosen[:, :1]).all(dim=1)
    return torch.tensor([int(a) for a in torch.unique(chosen[pure, 0])
                         if changed[pure & (chosen[:, 0] == a)].mean() > 0.05], dtype=torch.long)


def fit_motion_gate(dit_export: str | os.PathLike, store: str | os.PathLike, out: str | os.PathLike,
                    key: str = "player_pos", width: int = 32, steps: int = 3000, lr: float = 1e-3, batch: int = 256,
                    eval_every: int = 500, seed: int = 0, log=print, kernel: bool = False) -> dict[str, Any]:
    """Fit the gate of `dit_export`'s DiT on `store`'s cached latents; write the export to `out`; return the curve.

    `kernel`: also fit the action's kernel (`motion.head`) through the gate: the moved previous latent against the
    next one, on the interior (the objective's motion loss without the r-pixel border, where a shift brings in
    zeros). Over the whole latent the zeros cost more than a blend does (Crafter's grass looks alike shifted or not),
    so the fit kept a double move's kernel 61% on the centre tap; on the interior it moved 44% to the 4-pixel shift
    and 25% to the 2-pixel one (19% centre) in 1,000 steps at lr 3e-3.

    Held out: the episodes a `worldsim train` run holds out by default (`holdout_episodes`). Reported at each
    evaluation: held-out accuracy on all frames, and on the frames with an action that changes the state somewhere
    in the training data (Crafter's moves: where the gate has something to decide).
    """
    models, meta = load_export(dit_export)
    if "dit" not in models:
        raise ValueError(f"{dit_export} is an {meta['kind']} export; fitting a motion gate needs a DiT export")
    autoencoder = models["autoencoder"]
    dit = gated_dit(models["dit"], width).requires_grad_(False)
    cache = open_cache(store, autoencoder)
    if cache is None:
        raise ValueError(f"{store} has no latent cache of {dit_export}'s autoencoder: train a DiT on it once "
                         "(worldsim train latent_cache=true builds it)")
    held = holdout_episodes(cache.episodes, None)
    train_eps = [e for e in range(cache.episodes) if e not in set(held)]
    splits = {name: gate_examples(LatentWindowDataset(cache, store, frames=2, episodes=eps, state_change=key))
              for name, eps in (("train", train_eps), ("held", held))}
    acting = acting_actions(splits["train"].actions, splits["train"].changed)
    latents = torch.from_numpy(np.asarray(cache.latents[:], np.float32))
    fitted = [p for name, p in dit.named_parameters()
              if name.startswith("motion.gate_") or (kernel and name.startswith("motion.head."))]
    for p in fitted:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(fitted, lr=lr)
    generator = torch.Generator().manual_seed(seed)

    def forward(split: GateExamples, ix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The gate's logits (B,) and, with `kernel`, the moved previous latent's squared error against the next
        one on the interior (what enters the view is unknown, and the kernel pads it with zeros)."""
        previous = latents[split.previous[ix]][:, None]  # (B, 1, C, h, w)
        cond = dit.action_encoder(split.actions[ix][:, None], split.mask[ix][:, None])  # (B, 1, D)
        logit = dit.motion.gate_logit(previous, cond)
        if not kernel:
            return logit[:, 0], None
        r = dit.motion.radius
        moved = dit.motion(previous, cond, logit)[:, 0]
        return logit[:, 0], (moved - latents[split.previous[ix] + 1])[..., r:-r, r:-r].pow(2).mean()

    def evaluate(step: int, cpu0: float) -> dict[str, Any]:
        split = splits["held"]
        n = len(split.previous)
        with torch.no_grad():
            logit = torch.cat([forward(split, torch.arange(i, min(i + 1024, n)))[0] for i in range(0, n, 1024)])
        y = split.changed > 0.5
        right = (logit > 0) == y
        doubt = torch.isin(split.actions[:, :, 0].long(), acting).any(dim=1)
        row = {"step": step, "cpu_s": round(time.process_time() - cpu0, 1),
               "held_out_bce": round(float(F.binary_cross_entropy_with_logits(logit, y.float())), 4),
               "held_out_accuracy": round(float(right.float().mean()), 4),
               "held_out_accuracy_acting": round(float(right[doubt].float().mean()), 4),
               "acting_base": round(float(max(y[doubt].float().mean(), 1 - y[doubt].float().mean())), 4)}
        if kernel:
            with torch.no_grad():
                row["held_out_motion_mse"] = round(float(forward(split, torch.arange(min(n, 2048)))[1]), 5)
        log(f"[fit_motion_gate] step {step}: held-out accuracy {row['held_out_accuracy']:.3f}, on frames whose "
            f"actions can change {key} {row['held_out_accuracy_acting']:.3f} (commoner answer {row['acting_base']:.3f})"
            + (f", moved previous latent against the next: mse {row['held_out_motion_mse']:.4f}" if kernel else ""))
        return row

    cpu0 = time.process_time()
    curve = [evaluate(0, cpu0)]
    n = len(splits["train"].previous)
    for step in range(1, steps + 1):
        ix = torch.randint(0, n, (batch,), generator=generator)
        logit, motion = forward(splits["train"], ix)
        loss = F.binary_cross_entropy_with_logits(logit, splits["train"].changed[ix])
        if motion is not None:
            loss = loss + motion
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            curve.append(evaluate(step, cpu0))
    fit = {"from": str(dit_export), "store": str(store), "key": key, "kernel": kernel, "steps": steps, "lr": lr,
           "batch": batch, "held_out_episodes": held, "curve": curve}
    write_export_like(out, autoencoder, dit.requires_grad_(False), meta, motion_gate_fit=fit)
    return {"out": str(Path(out)), "examples": n, "held_out": len(splits["held"].previous),
            "acting_actions": acting.tolist(), "curve": curve}
