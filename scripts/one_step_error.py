"""Where a DiT's one-step frame loses to its autoencoder, on held-out windows of a store.

    python scripts/one_step_error.py EXPORT STORE [--windows 512] [--out F.json]

From the real context of each window (`worldsim.train.validation.DiTValidator`'s held-out windows), the last latent
frame is estimated as one-step sampling does (pure noise, t = 1) and decoded with the same context. Each estimate is
scored against the real frames (PSNR, and its latent error):
- `truth`: the true latent (what perfect prediction draws: the autoencoder's ceiling in this setting),
- `sample`: the one-step sample the simulator draws,
- `own` and `guess`: for a DiT whose conv prior's guess is composited into its estimate (`prior_composite`), the
  transformer's own estimate and the prior's guess, each alone,
- `copy`: the latent before, repeated.
On a probe-world store (ball state recorded) the windows are also split by how many balls are present and by whether
every ball is in free flight over the step (gravity alone changes its velocity: no bounce, collision, push or rest), so one
sees whether the error comes from events a predictor cannot know or from drawing motion it could.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from worldsim.data.store import EpisodeStore
from worldsim.diffusion.objective import predict_x0
from worldsim.export import ExportError, load_export
from worldsim.frames import frames_to_float
from worldsim.metrics import psnr
from worldsim.models.latents import num_latent_frames
from worldsim.train.latent_cache import LatentWindowDataset, build_cache
from worldsim.train.validation import SEED, DiTValidator, ValidationConfig, holdout_episodes


def free_flight(states: list[dict[str, np.ndarray]], k: int) -> np.ndarray:
    """Per window: True when every ball present at its end moves with one constant acceleration (gravity) from the
    frame before the last context frame to the last frame, i.e. nothing but gravity acts on it over the step."""
    free = []
    for st in states:
        accel = np.diff(st["position"][-k - 3:], n=2, axis=0)[:, st["present"][-1]]  # (frames - 2, balls, 2)
        if accel.size == 0:
            free.append(True)
            continue
        g = np.median(accel[..., 1])
        free.append(bool(np.abs(accel - np.array([0.0, g])).max() <= 1e-2 * max(abs(g), 1e-9)))
    return np.array(free)


def one_step_error(export: str, store_path: str, windows: int = 512) -> dict:
    models, meta = load_export(export)
    if "dit" not in models:
        raise ValueError(f"{export} is an {meta['kind']} export; one_step_error needs a DiT export")
    ae, dit = models["autoencoder"].eval(), models["dit"].eval()
    if dit.config.action_space is None:
        raise ValueError(f"{export}'s DiT takes no actions; one_step_error scores an action-conditioned DiT")
    with EpisodeStore.open(store_path, "r") as store:
        episodes = store.num_episodes
    cache = build_cache(store_path, ae, progress=False)
    frames = num_latent_frames(meta.get("window", 17), ae.cfg.temporal_factor)
    data = LatentWindowDataset(cache, store_path, frames, holdout_episodes(episodes, None))
    val = DiTValidator(data, store_path, ValidationConfig(windows=windows, sample_steps=1), ae, torch.device("cpu"), True)
    x0 = val.latents
    v, t_len = x0.shape[:2]
    with torch.no_grad():
        noise = torch.randn(x0[:, -1:].shape, generator=torch.Generator().manual_seed(SEED + 1))
        t = torch.zeros(v, t_len)
        t[:, -1] = 1.0
        out = dit(torch.cat([x0[:, :-1], noise], 1), t, val.actions, val.mask)
        estimates = {"truth": x0[:, -1:], "sample": predict_x0(noise, out.prediction[:, -1:].float(), t[:, -1:])}
        if out.own_prediction is not None:
            estimates["own"] = predict_x0(noise, out.own_prediction[:, -1:].float(), t[:, -1:])
        if out.prior_guess is not None:
            estimates["guess"] = out.prior_guess[:, -1:].float()
        estimates["copy"] = x0[:, -2:-1]
        real = frames_to_float(val.real)[:, -val.k:]
        scores = {name: psnr(val._decode_tail(torch.cat([x0[:, :-1], lat.to(x0.dtype)], 1)), real,
                             data_range=2.0).mean(dim=1) for name, lat in estimates.items()}  # (V,) each
    result = {"export": str(export), "store": str(store_path), "windows": v,
              "all": {name: {"psnr": round(float(s.mean()), 3),
                             "latent_mse": round(float((estimates[name] - x0[:, -1:]).pow(2).mean()), 5)}
                      for name, s in scores.items()}}
    if out.composite_mask is not None:
        result["composite_mask_mean"] = round(float(out.composite_mask[:, -1].mean()), 3)

    def split(selections: dict) -> dict:
        return {str(key): {"windows": int(sel.sum()), **{n: round(float(s[torch.from_numpy(sel)].mean()), 2)
                                                         for n, s in scores.items()}}
                for key, sel in selections.items() if sel.any()}

    if val.states[0] is not None and "position" in val.states[0]:
        balls = np.array([int(st["present"][-1].sum()) for st in val.states])
        result["by_balls"] = split({n: balls == n for n in sorted(set(balls.tolist()))})
        free = free_flight(val.states, val.k)
        result["by_flight"] = split({"free": free, "event": ~free})  # event: a bounce, collision, push or rest on the floor
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export")
    ap.add_argument("store")
    ap.add_argument("--windows", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="also write the result as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        result = one_step_error(args.export, args.store, args.windows)
    except (ValueError, OSError, ExportError) as e:
        sys.exit(f"one_step_error: {e}")
    names = list(result["all"])
    print(f"{result['windows']} held-out windows, PSNR (dB) of the decoded frames of one latent step:")
    print(f"{'windows':>28s} {'n':>5s} " + " ".join(f"{n:>7s}" for n in names))
    rows = [("all", result["windows"], {n: result["all"][n]["psnr"] for n in names})]
    for group in ("by_balls", "by_flight"):
        rows += [(f"{group[3:]} {key}", r["windows"], r) for key, r in result.get(group, {}).items()]
    if "by_flight" in result:
        print("(flight free: every ball moved by gravity alone over the step; event: a bounce, collision, push or rest)")
    for label, n, r in rows:
        print(f"{label[:28]:>28s} {n:5d} " + " ".join(f"{r[name]:7.2f}" for name in names))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
