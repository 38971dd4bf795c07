"""Fitting a simulator's pixel refiner (`worldsim.models.frame_refiner`) on windows of its own frames.

A window is what the refiner reads at one simulator step and what it should draw: the frames shown before the step,
the DiT's decoded frames of the step (the proposal) and the action, with the real world's frames of that step as the
target. `refiner_windows` rolls real episodes (random actions held for k frames, as `worldsim eval` does), starts the
simulator from real context every `stride` frames and steps it `steps` times with the real actions: the proposals
are exactly what the served simulator draws (its latent context never holds refined frames, so they do not depend on
the refiner), and the history is the real context at the first step and, after it, the given refiner's frames (or,
without one, the proposals). `fit_frame_refiner` fits cross-entropy against each target pixel's nearest colour, with
held-out PSNR of the expected colour against the proposal's at every evaluation.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from worldsim.models.frame_refiner import FrameRefiner, first_shown, moved_on, refine_shown
from worldsim.spaces import pack_action

WINDOW_KEYS = ("history", "proposal", "action", "target", "step")


def refiner_windows(sim: Any, world: str, seeds: list[int], steps: int = 1, stride: int = 8, refiner: FrameRefiner | None = None,
                    env_kwargs: dict | None = None, batch: int = 32, episode_steps: int = 64,
                    progress: bool = True) -> dict[str, np.ndarray]:
    """Windows of `sim` (a `Simulator` without a refiner) on the real world `world`, from each seed's episode.

    Each episode is `episode_steps` real steps long (or ends sooner). Returns arrays history uint8 (N, h, H, W, 3),
    proposal and target uint8 (N, k, H, W, 3), action packed (N, D), step (N,): the step after the real context (0 for
    the first).
    """
    from worldsim.agents import make_policy
    from worldsim.envs import make_real_env
    from worldsim.eval.episodes import roll_real

    if sim.refiner is not None:
        raise ValueError("refiner_windows needs the simulator's own frames: make it with SimConfig(refine=False)")
    k, n = sim.k, sim.config.context_frames
    context, history = 1 + (n - 1) * k, (refiner.cfg.history if refiner is not None else 4)
    env = make_real_env(world, size=sim.frame_size[0], **(env_kwargs or {}))
    out: dict[str, list] = {key: [] for key in WINDOW_KEYS}
    pending: list[tuple] = []

    def flush() -> None:
        tracks = [sim.start(c, a) for c, a, _, _ in pending]
        shown = [first_shown(history, c) for c, _, _, _ in pending]
        gens = [torch.Generator().manual_seed(i) for i in range(len(pending))]
        for j in range(steps):
            acts = np.stack([p[2][j] for p in pending])
            drawn = torch.from_numpy(sim.step(tracks, acts, gens).frames)
            for b, p in enumerate(pending):
                out["history"].append(shown[b]), out["proposal"].append(drawn[b].numpy()), out["action"].append(acts[b])
                out["target"].append(p[3][j * k:(j + 1) * k]), out["step"].append(j)
            shown = refine_shown(refiner, shown, drawn, acts)[1] if refiner is not None else moved_on(shown, drawn.numpy())
        pending.clear()

    try:
        for seed in tqdm(seeds, desc="refiner windows", disable=not progress):
            ep = roll_real(env, make_policy("random", env.action_space, 1, seed=seed), episode_steps, seed=seed, hold=k)
            packed = [pack_action(sim.action_space, a) for a in ep.actions]
            for s in range(0, len(ep.frames) - context - steps * k + 1, stride):
                ca = np.stack([np.zeros_like(packed[0])] + packed[s:s + context - 1])
                acts = [packed[s + context - 1 + j * k] for j in range(steps)]  # held for the step's k frames
                pending.append((ep.frames[s:s + context], ca, acts, ep.frames[s + context:s + context + steps * k]))
                if len(pending) == batch:
                    flush()
        if pending:
            flush()
    finally:
        env.close()
    return {key: np.stack(v) for key, v in out.items()}


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.float() - b.float()) ** 2).mean(dim=(1, 2, 3, 4))
    return 10 * torch.log10(255.0 ** 2 / mse.clamp_min(1e-10))


def held_out_psnr(net: FrameRefiner, windows: dict[str, torch.Tensor], idx: torch.Tensor, batch: int = 64) -> dict[str, float]:
    """Mean PSNR (dB) over the windows `idx` of the refined frames, the proposal and repeating the last frame shown."""
    scores: dict[str, list] = {"refined": [], "proposal": [], "copy": []}
    net.eval()
    for i in range(0, len(idx), batch):
        j = idx[i:i + batch]
        hist, prop, tgt = windows["history"][j], windows["proposal"][j], windows["target"][j]
        scores["refined"].append(_psnr(net.refine(hist, prop, windows["action"][j]), tgt))
        scores["proposal"].append(_psnr(prop, tgt))
        scores["copy"].append(_psnr(hist[:, -1:].expand_as(tgt), tgt))
    net.train()
    return {key: float(torch.cat(v).mean()) for key, v in scores.items()}


def fit_frame_refiner(net: FrameRefiner, windows: dict[str, np.ndarray], steps: int, batch: int = 16, lr: float = 1e-3,
                      schedule_steps: int | None = None, mse: float = 0.0, ce: float = 1.0, held_out: int = 1024,
                      every: int = 250, seed: int = 0,
                      on_eval: Callable[[dict], None] | None = None, progress: bool = True) -> list[dict]:
    """Fit `net` in place: AdamW, 100 warm-up steps, then a cosine over `schedule_steps` (default `steps`; a longer
    schedule stops with the rate still up). The loss is `ce` x the cross-entropy plus `mse` x the squared error of
    the expected colour (in [-1, 1] units: what PSNR scores). The first `held_out` windows of a seeded permutation are never fitted.
    Returns the learning curve (step, CPU seconds, loss, held-out PSNR), also passed to `on_eval` as it grows."""
    data = {key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in windows.items()}
    n = len(data["action"])
    if n <= held_out:
        raise ValueError(f"{n} windows leave nothing to fit once {held_out} are held out")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held, train = perm[:held_out], perm[held_out:]
    total = schedule_steps or steps
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    curve = [{"step": 0, "cpu_s": 0.0, **held_out_psnr(net, data, held)}]
    gen, start = torch.Generator().manual_seed(seed + 1), time.process_time()
    net.train()
    for step in tqdm(range(1, steps + 1), desc="fit refiner", disable=not progress):
        j = train[torch.randint(len(train), (batch,), generator=gen)]
        logits = net(data["history"][j], data["proposal"][j], data["action"][j])
        target = net.classes(data["target"][j])
        loss = ce * F.cross_entropy(logits.permute(0, 1, 3, 4, 2).reshape(-1, logits.shape[2]), target.reshape(-1))
        if mse:
            loss = loss + mse * F.mse_loss(net.expected(logits) / 127.5 - 1, data["target"][j].float() / 127.5 - 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % every == 0 or step == steps:
            curve.append({"step": step, "cpu_s": time.process_time() - start, "loss": float(loss),
                          **held_out_psnr(net, data, held)})
            if on_eval is not None:
                on_eval(curve)
    net.eval()
    return curve
