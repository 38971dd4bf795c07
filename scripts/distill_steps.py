"""Distil a DiT's few-step guided sampler into its one-step sample: python scripts/distill_steps.py EXPORT STORE OUT.

The teacher is the export's DiT frozen, sampling the newest latent frame of held-in windows from their real context
with `--teacher-steps` Euler steps and classifier-free guidance `--guidance`; the student (a copy of it) learns to
give that sample in one step from the same noise (at t = 1 its clean estimate is -v), alongside the ordinary
diffusion loss of the same windows (`--diffusion-weight`) so the rest of what it does (context, heads) stays.
The map from noise to the teacher's sample is deterministic, so the student is not pulled to the mean of what may
happen, as one-step training on data is (progressive distillation, Salimans & Ho 2022, in one stage).
Writes the student as a DiT export with the teacher's autoencoder; the curve (held-out one-step error against the
teacher's samples) beside it as distill.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export")
    ap.add_argument("store")
    ap.add_argument("out")
    ap.add_argument("--init", default=None, help="start the student from this export (a distillation to continue; "
                    "the teacher stays EXPORT's DiT)")
    ap.add_argument("--teacher-steps", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--window", type=int, default=9, help="latent frames per window: context plus the one sampled")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--diffusion-weight", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="the teacher's sampling and the student's training step under bf16 autocast: auto where the "
                    "CPU multiplies bf16 natively (worldsim.train.precision); the held-out curve is always fp32")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from worldsim.diffusion.objective import ObjectiveConfig, diffusion_loss
    from worldsim.diffusion.samplers import sample_euler
    from worldsim.export import ExportError, load_export
    from worldsim.train.latent_cache import LatentWindowDataset, open_cache
    from worldsim.train.precision import autocast, cpu_autocast
    from worldsim.train.validation import holdout_episodes

    torch.set_num_threads(args.threads)
    try:
        models, meta = load_export(args.export)
    except (ExportError, OSError) as e:
        sys.exit(f"distill_steps: {e}")
    if "dit" not in models or models["dit"].action_encoder is None:
        sys.exit("distill_steps: the export must hold a DiT that takes actions (guidance drops them)")
    teacher = models["dit"].eval().requires_grad_(False)
    student = copy.deepcopy(teacher)
    if args.init is not None:
        try:
            start = load_export(args.init)[0].get("dit")
        except (ExportError, OSError) as e:
            sys.exit(f"distill_steps: --init: {e}")
        if start is None or start.config != teacher.config:
            sys.exit(f"distill_steps: --init {args.init} holds no DiT of the teacher's architecture")
        student.load_state_dict(start.state_dict())
    student.train().requires_grad_(True)
    cache = open_cache(args.store, models["autoencoder"])
    if cache is None:
        sys.exit(f"distill_steps: {args.store} has no latent cache of this autoencoder (worldsim train builds it)")
    held = holdout_episodes(cache.episodes, None)
    splits = {name: LatentWindowDataset(cache, args.store, args.window, episodes=eps) for name, eps in
              (("train", [e for e in range(cache.episodes) if e not in set(held)]), ("held", held))}
    generator = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
    objective = ObjectiveConfig(time_sampling="uniform")
    bf16 = cpu_autocast(args.precision, torch.device("cpu"))

    def batch(split: str, ix: torch.Tensor) -> tuple[torch.Tensor, ...]:
        items = [splits[split][int(i)] for i in ix]
        return tuple(torch.stack([it[key] for it in items]) for key in ("latents", "action", "action_mask"))

    def targets(x0, actions, mask, noise) -> torch.Tensor:
        with torch.no_grad():
            return sample_euler(teacher, tuple(noise.shape), steps=args.teacher_steps, noise=noise, context=x0[:, :-1],
                                actions=actions, action_mask=mask, guidance_scale=args.guidance)

    def one_step(x0, actions, mask, noise) -> torch.Tensor:
        level = torch.zeros(x0.shape[:2])
        level[:, -1] = 1.0
        return -student(torch.cat([x0[:, :-1], noise], 1), level, actions, mask).prediction[:, -1:].float()

    held_ix = torch.linspace(0, len(splits["held"]) - 1, 32).long()
    held_batch = batch("held", held_ix)
    held_noise = torch.randn(held_batch[0][:, -1:].shape, generator=torch.Generator().manual_seed(1))
    held_target = targets(*held_batch, held_noise)
    curve, cpu0 = [], time.process_time()

    def evaluate(step: int) -> None:
        with torch.no_grad():
            student.eval()
            err = (one_step(*held_batch, held_noise) - held_target).pow(2).mean().item()
            student.train()
        curve.append({"step": step, "cpu_s": round(time.process_time() - cpu0, 1), "held_out_mse_to_teacher": err})
        print(f"[distill] step {step}: held-out one-step error against the teacher's samples {err:.4f}", flush=True)

    def save(step: int) -> None:
        write_student(args, models, meta, student, curve, step, bf16)

    evaluate(0)
    for step in range(1, args.steps + 1):
        x0, actions, mask = batch("train", torch.randint(0, len(splits["train"]), (args.batch,), generator=generator))
        noise = torch.randn(x0[:, -1:].shape, generator=generator)
        with autocast(bf16, torch.device("cpu")):
            loss = (one_step(x0, actions, mask, noise) - targets(x0, actions, mask, noise).float()).pow(2).mean()
            if args.diffusion_weight > 0:
                loss = loss + args.diffusion_weight * diffusion_loss(student, x0, actions, mask, None, generator,
                                                                     objective)[0]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step)
            save(step)  # every evaluation leaves a complete export: a stopped run continues from it with --init
    print(f"wrote {args.out}")


def write_student(args, models, meta, student, curve, step: int, bf16: bool) -> None:
    """The student so far as a DiT export in args.out, with what it was distilled from and its curve."""
    from worldsim.export import write_export_like

    distilled = {"from": args.export, "init": args.init, "teacher_steps": args.teacher_steps, "guidance": args.guidance,
                 "steps": step, "lr": args.lr, "batch": args.batch, "window": args.window,
                 "precision": "bf16 autocast" if bf16 else "fp32"}
    student.eval()
    write_export_like(args.out, models["autoencoder"], copy.deepcopy(student).requires_grad_(False), meta,
                      distilled=distilled)
    student.train()
    (Path(args.out) / "distill.json").write_text(json.dumps({**distilled, "curve": curve}, indent=1))


if __name__ == "__main__":
    main()
