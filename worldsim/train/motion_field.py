"""Fit a DiT's motion field (`DiTConfig.motion_field`) or conv prior (`DiTConfig.conv_prior`) on its own, before the
DiT trains with it.

The field (`worldsim.models.motion.MotionField`) moves the previous latent frame pixel by pixel, from that frame,
the one before it and the action. Added to a trained DiT it starts as a uniform blur that the DiT ignores (its
embedding starts at zero), and at a warm start's learning rate (3e-4) it learns slowly inside DiT training: after
400 steps of the shipped Probes-v0 continued with it, its moved frame was still further from the next latent
than the previous frame itself. Fitted alone on every cached 3-frame window, with the rest of the DiT frozen, it
sees hundreds of windows a step at a learning rate of its own.

    python scripts/fit_motion_field.py DIT_EXPORT STORE OUT [--width 32] [--radius 4] [--steps 1500] [--prior]

`--prior` fits a conv prior of `width` channels instead (the next latent guessed by a conv net, which the DiT then
reads the same way: `worldsim.models.motion.ConvPrior`).

The export written to OUT is the input export with the fitted field, ready for `worldsim train init_from=OUT
+model_overrides.previous_frames=2 +model_overrides.motion_field=WIDTH objective.field_weight=1`.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from worldsim.diffusion.objective import change_weights
from worldsim.export import load_export, write_export_like
from worldsim.models.dit import DiT
from worldsim.train.latent_cache import LatentWindowDataset, autoencoder_key, open_cache
from worldsim.train.validation import holdout_episodes
from worldsim.train.warm_start import widened_prior, with_config, with_prior_width


def field_dit(dit: DiT, width: int, radius: int, kind: str = "field", heads: int = 1, frames: int = 2) -> DiT:
    """`dit` itself if it has the module (`kind` "field": a motion field; "prior": a conv prior), else a copy with
    a fresh one (every other weight unchanged). Both read the frame before the previous one too: a DiT fed only the
    previous frame gains that pathway (zero at first, so it predicts as before). A prior of fewer than `heads`
    heads gains the others (each starting as copying, the choice starting on its first head: it guesses as before);
    one reading fewer than `frames` frames gains the older ones' input (zero at first: it guesses as before)."""
    if getattr(dit, kind) is not None:
        if kind != "prior" or (heads, frames) == (dit.config.prior_heads, dit.config.prior_frames):
            return dit
        if heads < dit.config.prior_heads or frames < dit.config.prior_frames:
            raise ValueError(f"the DiT's conv prior has {dit.config.prior_heads} heads and reads "
                             f"{dit.config.prior_frames} frames; fitting it with {heads} and {frames} would drop "
                             "trained weights")
        new, added = with_config(dit, prior_heads=heads, prior_frames=frames)
        assert all(name.startswith("prior.") for name in added), added
        return new
    if not dit.config.previous_frame:
        raise ValueError(f"a {'motion field' if kind == 'field' else 'conv prior'} reads the two frames before each "
                         "one: the DiT needs the previous-frame pathway (previous_frame=True)")
    change = {"motion_field": width, "motion_field_radius": radius} if kind == "field" \
        else {"conv_prior": width, "prior_heads": heads, "prior_frames": frames}
    new, added = with_config(dit, previous_frames=2, **change)
    assert all(name.startswith((kind, "earlier_")) for name in added), added
    return new


def prior_of(export: str | os.PathLike, autoencoder: nn.Module, dit: DiT) -> nn.Module:
    """The conv prior of the DiT export `export`, to distil `dit`'s from: ValueError unless it guesses the same
    latents (same autoencoder encoder and statistics), actions and number of frames."""
    models = load_export(export)[0]
    other = models.get("dit")
    if other is None or other.prior is None:
        raise ValueError(f"a teacher ({export}) is a DiT export with a conv prior, for --distill")
    if autoencoder_key(models["autoencoder"]) != autoencoder_key(autoencoder) \
            or other.config.action_space != dit.config.action_space or other.config.prior_frames != dit.config.prior_frames:
        raise ValueError(f"the teacher {export} guesses other latents, actions or frames than the DiT fitted")
    return other.prior


def truncated_history(past: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """`past` (latents (B, 1, C, h, w) before each window's guess, newest first) with half the windows keeping only
    their m newest (m drawn from 2..len(past)), zeros before them: as a rollout's first steps and a DiT's training
    windows show a prior reading more than two frames."""
    frames, n = len(past), len(past[0])
    kept = torch.randint(2, frames + 1, (n,), generator=generator)
    kept[: n // 2] = frames
    return [p * (kept > d).float()[:, None, None, None, None] for d, p in enumerate(past)]


def fit_motion_field(dit_export: str | os.PathLike, store: str | os.PathLike, out: str | os.PathLike,
                     width: int | None = None, radius: int = 4, steps: int = 1500, lr: float = 3e-3, batch: int = 128,
                     eval_every: int = 250, seed: int = 0, log=print, kind: str = "field",
                     unroll: int = 1, schedule: str = "constant", heads: int = 1,
                     change_weight: float = 0.0, frames: int = 2, distill: bool = False,
                     teacher_export: str | os.PathLike | None = None, widen: bool = False) -> dict[str, Any]:
    """Fit the motion field of `dit_export`'s DiT on `store`'s cached latents; write the export to `out`; return
    the curve: held-out mean squared error of the moved previous latent against the next one, beside copying the
    previous latent (what the DiT's copy pathway starts from).

    `unroll` K > 1: each window is a K-step rollout from its first two real frames, the module's own guesses
    feeding its next steps (as a simulator's frames do), with the error averaged over the K steps; the curve then
    also holds the held-out rollout error (`held_out_{kind}_rollout_mse`).

    `schedule` "cosine" decays the learning rate to 0 at the last step. The export is written at every evaluation,
    so a stopped fit continues from OUT (as DIT_EXPORT) with what it had learnt; the record then counts the steps
    done before (`steps_before`). The curve also holds the mean training error since the previous evaluation
    (`train_{kind}_mse`): far below the held-out error, the module is short of data, not of steps.

    `heads` K > 1 (kind "prior"): a committed prior (`ConvPrior`'s heads) fitted winner-takes-all; the held-out
    error is the chosen head's, and the curve adds the closest head's (`held_out_prior_oracle_mse`) and how often
    the choice falls on the first head (`choice_first`).

    `change_weight` W > 0: the training error weighs each latent pixel 1 + W min(|next - previous| averaged over
    channels, 1) (`objective.change_weights`), so a moving object counts for more than its share of pixels and
    fading it costs more; the held-out errors stay unweighted.

    `frames` F > 2 (kind "prior"): the prior reads the F frames before each one (`DiTConfig.prior_frames`), and a
    prior reading fewer gains the others' input. Windows then hold F + unroll latent frames; half of each batch
    keeps only its m newest frames before the first guess (m drawn from 2..F, zeros before them), as a rollout's
    first steps and a DiT's training windows see them. The held-out errors use every frame.

    `width` (kind "prior"): the channels of a new prior (default 32); given for a DiT whose prior has another width,
    that prior is replaced by a fresh one of `width` channels (`warm_start.with_prior_width`: a narrower prior makes
    a cheaper simulator step). `distill`: the new prior is fitted to the replaced one's guesses instead of the next
    latents (a drop-in for the prior the DiT learnt to read); the curve then adds its held-out distance to them
    (`held_out_teacher_mse`) and the replaced prior's own error (`held_out_teacher_prior_mse`). `teacher_export`: the
    prior is distilled from that export's conv prior instead (same latents and actions), whatever its own width:
    how a distilled prior continues from OUT (which holds only the new prior). `widen`: a `width` that is a larger
    multiple of the prior's widens that prior instead, guessing exactly as before (`warm_start.widened_prior`), so
    the fit continues from what it had learnt with more channels."""
    models, meta = load_export(dit_export)
    if "dit" not in models:
        raise ValueError(f"{dit_export} is an {meta['kind']} export; fitting a motion field needs a DiT export")
    autoencoder = models["autoencoder"]
    if kind not in ("field", "prior"):
        raise ValueError(f"kind must be 'field' or 'prior', got {kind!r}")
    if change_weight < 0 or (heads > 1 and change_weight):
        raise ValueError(f"change_weight must be >= 0 and is for a one-head fit, got {change_weight} with {heads} heads")
    if heads < 1 or (heads > 1 and (kind != "prior" or unroll > 1)):
        raise ValueError(f"heads={heads}: more than one head is for a prior (--prior) fitted one step at a time "
                         f"(unroll 1), got kind {kind!r}, unroll {unroll}")
    if frames < 2 or (frames > 2 and kind != "prior"):
        raise ValueError(f"frames={frames}: a prior (--prior) reads 2 frames or more, a motion field 2")
    source, teacher = models["dit"], None
    own = source.config.conv_prior if kind == "prior" else source.config.motion_field
    if widen and (kind != "prior" or distill or width is None):
        raise ValueError(f"widen widens a DiT's conv prior to --width (--prior, no --distill), got kind {kind!r}, "
                         f"width {width}, distill {distill}")
    if widen:
        source = widened_prior(source, width)
    elif kind == "prior" and own and width is not None and width != own:
        source, teacher = with_prior_width(source, width)
    if teacher_export is not None:
        if not distill:
            raise ValueError(f"a teacher ({teacher_export}) is for --distill")
        teacher = prior_of(teacher_export, autoencoder, source)
    if teacher is not None:
        teacher.requires_grad_(False)
    one_step = unroll == 1 and heads == 1 and not change_weight and frames == source.config.prior_frames
    if distill and (teacher is None or not one_step):
        raise ValueError(f"distill fits a prior to another (the DiT's own, replaced, or --teacher's), one step at a "
                         f"time: it needs --prior and a --width other than the prior's ({own or 'none'}) or a teacher, "
                         f"unroll 1, one head, no change weight and the prior's frames; got width {width}, unroll "
                         f"{unroll}, heads {heads}, change_weight {change_weight}, frames {frames}")
    dit = field_dit(source, width or 32, radius, kind, heads, frames).requires_grad_(False)
    width = dit.config.conv_prior if kind == "prior" else dit.config.motion_field  # what is fitted, for the record
    frames = dit.config.prior_frames if kind == "prior" else 2  # a prior that reads more keeps reading them
    module = getattr(dit, kind)
    cache = open_cache(store, autoencoder)
    if cache is None:
        raise ValueError(f"{store} has no latent cache of {dit_export}'s autoencoder: train a DiT on it once "
                         "(worldsim train builds it)")
    held = holdout_episodes(cache.episodes, None)
    if unroll < 1:
        raise ValueError(f"unroll must be >= 1, got {unroll}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    splits = {name: LatentWindowDataset(cache, store, frames=frames + unroll, episodes=eps)
              for name, eps in (("train", [e for e in range(cache.episodes) if e not in set(held)]), ("held", held))}
    latents = torch.from_numpy(np.asarray(cache.latents[:], np.float32))
    fitted = list(module.parameters())
    for p in fitted:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(fitted, lr=lr)
    generator = torch.Generator().manual_seed(seed)

    def history(first: torch.Tensor, train: bool) -> list[torch.Tensor]:
        """The `frames` latents (B, 1, C, h, w) before each window's first guess, newest first; in training, half
        the windows keep only their m newest (m from 2..frames), zeros before them."""
        past = [latents[first + frames - 1 - d][:, None] for d in range(frames)]
        return truncated_history(past, generator) if train and frames > 2 else past

    def guess(past: list[torch.Tensor], cond: torch.Tensor, by: nn.Module | None = None) -> torch.Tensor:
        by = module if by is None else by
        older = torch.stack(past[2:], 2) if len(past) > 2 and kind == "prior" else None
        return by(past[0], past[1], cond) if older is None else by(past[0], past[1], cond, older)

    def errors(data: LatentWindowDataset, ix: torch.Tensor, steps: int = 1, weight: float = 0.0, train: bool = False,
               to: nn.Module | None = None, by: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(moved - next)^2 over a `steps`-step rollout and (previous - next)^2 at its first step, each averaged over
        the windows `ix`; with `to` (a prior), its guess stands for the next latent; with `by`, it moves instead of
        the fitted module."""
        first = torch.from_numpy(data.starts[ix.numpy()])
        past = history(first, train)
        copy, error = (latents[first + frames - 1] - latents[first + frames]).pow(2).mean(), 0.0
        for j in range(frames, frames + steps):
            cond = dit.action_encoder(data.action[first + j][:, None], data.action_mask[first + j][:, None])
            moved = guess(past, cond, by)
            if to is None:
                target = latents[first + j]
            else:
                with torch.no_grad():
                    target = guess(past, cond, to)[:, 0].float()
            err = (moved[:, 0] - target).pow(2)  # (B, C, h, w)
            if weight > 0:  # latent pixels that truly change weigh more
                w = change_weights(torch.stack([latents[first + j - 1], latents[first + j]], 1), weight)[:, 1]
                err = err * w / w.mean()
            error = error + err.mean() / steps
            past = [moved] + past[:-1]
        return error, copy

    def committed(data: LatentWindowDataset, ix: torch.Tensor,
                  train: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A committed prior's winner-takes-all loss on the windows `ix`, and its parts."""
        first = torch.from_numpy(data.starts[ix.numpy()])
        cond = dit.action_encoder(data.action[first + frames][:, None], data.action_mask[first + frames][:, None])
        past = history(first, train)
        older = torch.stack(past[2:], 2) if frames > 2 else None
        return module.committed_loss(past[0], past[1], cond, latents[first + frames][:, None], older=older)

    held_ix = torch.linspace(0, len(splits["held"].starts) - 1, min(2048, len(splits["held"].starts))).long()
    cpu0, curve, trained = time.process_time(), [], []
    key = "motion_field_fit" if kind == "field" else "conv_prior_fit"
    last_fit = meta.get(key) or {}  # a stopped fit continued from its own export counts the steps it had done
    before = last_fit.get("steps", 0) + last_fit.get("steps_before", 0) if last_fit.get("out") == str(out) else 0
    fit = {"from": str(dit_export), "out": str(out), "store": str(store), "width": width, "radius": radius,
           "steps": steps, "steps_before": before, "lr": lr, "schedule": schedule, "batch": batch, "unroll": unroll,
           **({"distilled_from_width": teacher.inp.out_channels} if distill else {}),
           **({"widened_from_width": own} if widen else {}),
           **({"teacher": str(teacher_export)} if teacher_export is not None else {}),
           **({"frames": frames} if frames > 2 else {}),
           **({"heads": heads} if heads > 1 else {}), **({"change_weight": change_weight} if change_weight else {}),
           "held_out_episodes": held, "curve": curve}

    def evaluate(step: int) -> None:
        with torch.no_grad():
            moved, copy = errors(splits["held"], held_ix)
            rollout = errors(splits["held"], held_ix, unroll)[0] if unroll > 1 else None
            parts = committed(splits["held"], held_ix)[1] if heads > 1 else {}
            if teacher is not None:  # how close to the prior it replaces, and that prior's own error
                parts = {"teacher": errors(splits["held"], held_ix, to=teacher)[0], "teacher_prior": teacher_mse}
        curve.append({"step": step, "cpu_s": round(time.process_time() - cpu0, 1),
                      f"held_out_{kind}_mse": round(float(moved), 5), "held_out_copy_mse": round(float(copy), 5),
                      **({f"held_out_{kind}_rollout_mse": round(float(rollout), 5)} if unroll > 1 else {}),
                      **({"held_out_prior_oracle_mse": round(float(parts["oracle"]), 5),
                          "choice_first": round(float(parts["first"]), 3)} if heads > 1 else {}),
                      **({"held_out_teacher_mse": round(float(parts["teacher"]), 5),
                          "held_out_teacher_prior_mse": round(float(parts["teacher_prior"]), 5)}
                         if teacher is not None else {}),
                      **({f"train_{kind}_mse": round(float(np.mean(trained)), 5)} if trained else {})})
        log(f"[fit_motion_field] step {step}: held-out {kind} guess of the next latent: mse {float(moved):.4f} "
            f"(copying the previous one: {float(copy):.4f})"
            + (f"; over {unroll}-step rollouts {float(rollout):.4f}" if unroll > 1 else "")
            + (f"; closest head {float(parts['oracle']):.4f}, first head chosen {float(parts['first']):.0%}"
               if heads > 1 else "")
            + (f"; from the replaced prior's guess {float(parts['teacher']):.4f} (its own mse "
               f"{float(parts['teacher_prior']):.4f})" if teacher is not None else "")
            + (f"; training windows {np.mean(trained):.4f}" if trained else ""))
        trained.clear()
        if step:
            write_export_like(out, autoencoder, dit.requires_grad_(False), meta, **{key: {**fit, "steps": step}})
            for p in fitted:
                p.requires_grad_(True)

    with torch.no_grad():  # the teacher does not change: its own held-out error once
        teacher_mse = None if teacher is None else errors(splits["held"], held_ix, by=teacher)[0]
    evaluate(0)
    n = len(splits["train"].starts)
    for step in range(1, steps + 1):
        if schedule == "cosine":
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps))
        ix = torch.randint(0, n, (batch,), generator=generator)
        loss = committed(splits["train"], ix, True)[0] if heads > 1 \
            else errors(splits["train"], ix, unroll, change_weight, True, teacher if distill else None)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        trained.append(float(loss.detach()))
        if step % eval_every == 0 or step == steps:
            evaluate(step)
    return {"out": str(out), "windows": n, "held_out": len(held_ix), "curve": curve}
