"""Rectified flow vs v-prediction on a synthetic action-controlled latent video, same budget.

Trains the tiny DiT preset both ways (same data, noise-level sampling, optimiser and steps), then
samples the frame after 3 clean context frames and reports its mean squared error against the true
frame, for several step counts. The result chose `worldsim.diffusion.objective`'s parameterisation.

    .venv/bin/python scripts/compare_objectives.py --steps 600 --seeds 0 1 --out compare.json

The task: a 2x2 square on an 8x8, 4-channel latent, moved one cell per frame (wrapping) by a
Discrete(5) action (stay, up, down, left, right); the next frame is a deterministic function of
the last frame and the action, so a sample has a ground truth.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from gymnasium import spaces

from worldsim.diffusion.objective import ObjectiveConfig, add_noise, sample_noise_levels, v_target
from worldsim.diffusion import toy
from worldsim.diffusion.samplers import sample_euler, time_grid
from worldsim.models.presets import build_dit
from worldsim.spaces import space_to_json

FRAMES = 4


def make_batch(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent videos (B, FRAMES, CHANNELS, SIZE, SIZE) and packed actions (B, FRAMES, 1, 1)."""
    return toy.make_batch(batch, FRAMES, generator)


def loss_fn(kind: str, model, x0, actions, mask, generator, config):
    t, is_context = sample_noise_levels(x0.shape[0], FRAMES, generator, config)
    noise = torch.randn(x0.shape, generator=generator)
    if kind == "rectified_flow":  # x_t = (1 - t) x0 + t eps, target eps - x0 (Liu et al. 2022)
        s = t[:, :, None, None, None]
        x_t, target = (1 - s) * x0 + s * noise, noise - x0
    else:  # the library's v-prediction: x_t = a x0 + s eps, v = a eps - s x0 (Salimans & Ho 2022)
        x_t, target = add_noise(x0, noise, t), v_target(x0, noise, t)
    per_frame = (model(x_t, t, actions, mask).prediction - target).pow(2).mean(dim=(2, 3, 4))
    weight = (~is_context).float()
    return (per_frame * weight).sum() / weight.sum()


@torch.no_grad()
def sample_rectified_flow(model, context, actions, mask, steps, generator):
    """Euler on dx/dt = v from t = 1 to 0, new frame only."""
    x = torch.randn(context.shape[0], 1, *context.shape[2:], generator=generator)
    ts = time_grid(steps).tolist()
    for t_cur, t_next in zip(ts[:-1], ts[1:]):
        level = torch.zeros(context.shape[0], FRAMES)
        level[:, -1] = t_cur
        v = model(torch.cat([context, x], 1), level, actions, mask).prediction[:, -1:]
        x = x + (t_next - t_cur) * v
    return x


def run(kind: str, seed: int, train_steps: int, batch: int, sample_steps: list[int]) -> dict:
    torch.manual_seed(seed)
    model = build_dit("tiny", latent_channels=toy.CHANNELS, action_space=space_to_json(spaces.Discrete(5)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    config = ObjectiveConfig(action_dropout=0.0)
    data_gen, noise_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1000)
    start = time.perf_counter()
    for _ in range(train_steps):
        x0, actions = make_batch(batch, data_gen)
        mask = torch.ones(actions.shape[:3], dtype=torch.bool)
        loss = loss_fn(kind, model, x0, actions, mask, noise_gen, config)
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - start
    model.eval()
    x0, actions = make_batch(256, torch.Generator().manual_seed(12345))
    mask = torch.ones(actions.shape[:3], dtype=torch.bool)
    context, truth = x0[:, :-1], x0[:, -1:]
    errors = {}
    for steps in sample_steps:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            if kind == "rectified_flow":
                sample = sample_rectified_flow(model, context, actions, mask, steps, gen)
            else:  # the library's sampler: DDIM for the v-prediction model
                sample = sample_euler(model, truth.shape, steps=steps, generator=gen, context=context, actions=actions,
                                      action_mask=mask)
        errors[steps] = (sample - truth).pow(2).mean().item()
    return {"kind": kind, "seed": seed, "final_loss": loss.item(), "train_seconds": train_s, "mse": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps per run")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sample-steps", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [run(kind, seed, args.steps, args.batch, args.sample_steps)
               for seed in args.seeds for kind in ("rectified_flow", "v_prediction")]
    print(f"{'objective':16} {'seed':>4} " + " ".join(f"{'mse@' + str(s):>10}" for s in args.sample_steps) + "  train_s")
    for r in results:
        print(f"{r['kind']:16} {r['seed']:>4} " + " ".join(f"{r['mse'][s]:10.4f}" for s in args.sample_steps)
              + f"  {r['train_seconds']:.1f}")
    for kind in ("rectified_flow", "v_prediction"):
        mean = {s: sum(r["mse"][s] for r in results if r["kind"] == kind) / len(args.seeds) for s in args.sample_steps}
        print(f"{kind:16} mean " + " ".join(f"{mean[s]:10.4f}" for s in args.sample_steps))
    baseline = make_batch(256, torch.Generator().manual_seed(12345))[0]
    print(f"copy-last-frame baseline mse: {(baseline[:, -2] - baseline[:, -1]).pow(2).mean().item():.4f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
