"""How precisely the probe world's frames pin down where a ball goes next: a bound on one-step prediction.

    python scripts/probe_motion_bound.py [--balls 40] [--context 4 7] [--autoencoder-psnr 38.82] [--out F.json]

The probe world draws balls without anti-aliasing (a pixel is the ball's when its centre is inside the disc), so a frame
shows a ball's position only up to which pixel centres it covers. Given a ball's last L frames, every (position,
velocity) whose free-flight trajectory covers exactly the same pixels in each of those frames is as likely as the true
one. That posterior is sampled by sequential rejection: frame by frame, candidates are drawn uniformly in a box around
the accepted ones (kept along their principal axes, since position and velocity are tied), and those that draw a
different mask are rejected. The posterior-mean next k frames (each pixel the ball's colour with the posterior
probability that the ball covers it) are what the best predictor of mean squared error draws from those L frames alone;
their error is the least ANY predictor can make there, a learned one included.

Balls are drawn as the random family draws them (radius 0.2-0.35 m, velocity -2..2 m/s per axis, a palette colour),
in free flight clear of the walls for L + k frames, alone on the background. With `--autoencoder-psnr A` (what the
autoencoder scores on such frames, e.g. `scripts/one_step_error.py`'s `truth` on one-ball windows) its error is added,
which is the bound for a latent model decoded by that autoencoder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from worldsim.envs.probe.physics import PhysicsConfig, WorldState, step
from worldsim.envs.probe.render import BACKGROUND, PALETTE, Renderer

SIZE = 64
ACCEPTED = 40  # accepted samples gathered at each frame before the box narrows
DRAWS = 8000  # candidates drawn at a time
TRIES = 500  # draws at one frame before a ball is given up (the second frame narrows the velocity about 1000-fold)


def flight(state: np.ndarray, frames: int, cfg: PhysicsConfig) -> np.ndarray:
    """(N, 4) x, y, vx, vy at frame 0 -> (N, frames, 2) centres: the exact constant-acceleration flight."""
    t = np.arange(frames) * cfg.dt
    g = np.array([0.0, -cfg.gravity])
    return state[:, None, :2] + state[:, None, 2:] * t[None, :, None] + 0.5 * g * (t ** 2)[None, :, None]


class Ball:
    """One ball's free flight and its masks as the renderer draws them, vectorised over candidate (position, velocity).
    Pixel (row, col) samples the world point at its centre, as `Renderer` does (`bound` checks every true flight
    against the renderer's own frames)."""

    def __init__(self, cfg: PhysicsConfig, radius: float) -> None:
        self.cfg, self.radius = cfg, radius
        self.xs = (np.arange(SIZE) + 0.5) * cfg.width / SIZE  # pixel-centre x of each column
        self.ys = cfg.height - (np.arange(SIZE) + 0.5) * cfg.height / SIZE  # pixel-centre y of each row

    def masks(self, centres: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(N, T, 2) centres -> (N, T, rows, cols) bool: the pixels whose centre lies in the disc (the renderer's rule)."""
        dx = self.xs[cols][None, None, None, :] - centres[..., 0, None, None]
        dy = self.ys[rows][None, None, :, None] - centres[..., 1, None, None]
        return dx * dx + dy * dy <= self.radius * self.radius


def true_flight(rng: np.random.Generator, cfg: PhysicsConfig, frames: int) -> tuple[float, np.ndarray, np.ndarray]:
    """A random-family ball clear of the walls for `frames` frames: radius, its state at frame 0, its centres by the env's
    own physics (which the analytic flight must match)."""
    while True:
        r = rng.uniform(0.2, 0.35)
        state = np.concatenate([rng.uniform(0.6, cfg.width - 0.6, 2), rng.uniform(-2.0, 2.0, 2)])
        world = WorldState(state[None, :2].copy(), state[None, 2:].copy(), np.array([r]), np.array([1.0]), 0.8,
                           pusher_pos=np.array([-10.0, -10.0]))
        centres = [world.pos[0].copy()]
        for _ in range(frames - 1):
            step(world, np.zeros(2), cfg)
            centres.append(world.pos[0].copy())
        centres = np.array(centres)
        analytic = flight(state[None], frames, cfg)[0]
        if (centres > r + 0.1).all() and (centres < np.array([cfg.width, cfg.height]) - r - 0.1).all() \
                and np.allclose(analytic, centres, rtol=0, atol=1e-9):  # nothing but gravity acted
            return r, state, centres


def posterior(rng: np.random.Generator, ball: Ball, state: np.ndarray, truth: np.ndarray, context: int,
              rows: np.ndarray, cols: np.ndarray, count: int) -> np.ndarray | None:
    """`count` samples of (x, y, vx, vy) at frame 0 whose flight draws `truth`'s first `context` masks (None: lost)."""
    px = ball.cfg.width / SIZE
    centre, axes = state.copy(), np.eye(4)
    half = np.array([px, px, px / ball.cfg.dt, px / ball.cfg.dt])  # a pixel, and a pixel a frame, each way

    def consistent(frames: int) -> np.ndarray:
        s = centre + (rng.uniform(-1, 1, (DRAWS, 4)) * half) @ axes.T
        ok = (ball.masks(flight(s, frames, ball.cfg), rows, cols) == truth[None, :frames]).all(axis=(1, 2, 3))
        return s[ok]

    for frames in range(1, context + 1):
        kept: list[np.ndarray] = []
        for _ in range(TRIES):
            kept.append(consistent(frames))
            if sum(len(x) for x in kept) >= (ACCEPTED if frames < context else count):
                break
        accepted = np.concatenate(kept)
        if len(accepted) < ACCEPTED:
            return None
        if frames == context:
            return accepted[:count]
        centre = accepted.mean(0)
        axes = np.linalg.svd(accepted - centre, full_matrices=False)[2].T
        half = np.abs((accepted - centre) @ axes).max(0) * 1.3 + 1e-9  # a margin: the set at the next frame lies inside
    return None


def bound(balls: int, contexts: list[int], k: int, samples: int, ae_psnr: float | None, seed: int) -> dict:
    cfg = PhysicsConfig()
    renderer = Renderer(SIZE, cfg.width, cfg.height)
    rng = np.random.default_rng(seed)
    ae_mse = 0.0 if ae_psnr is None else 4.0 / 10 ** (ae_psnr / 10)  # frames in [-1, 1]: data range 2
    result: dict = {"balls": balls, "k": k, "samples": samples, "autoencoder_psnr": ae_psnr, "seed": seed, "context": {}}
    for context in contexts:
        mse, sharp, spread, lost = [], [], [], 0
        while len(mse) < balls:
            r, state, centres = true_flight(rng, cfg, context + k)
            ball = Ball(cfg, r)
            lo, hi = centres.min(0) - r - 0.2, centres.max(0) + r + 0.2  # the pixels the ball can reach, with a margin
            cols = np.arange(SIZE)[(ball.xs >= lo[0]) & (ball.xs <= hi[0])]
            rows = np.arange(SIZE)[(ball.ys >= lo[1]) & (ball.ys <= hi[1])]
            truth = ball.masks(centres[None], rows, cols)[0]  # (context + k, h, w)
            drawn = np.stack([(renderer.render(c[None], np.array([r]), PALETTE[:1], np.array([-10.0, -10.0]), 0.0,
                                               np.zeros((0, 4))) != BACKGROUND).any(-1) for c in centres])
            if not np.array_equal(drawn[:, rows][:, :, cols], truth) or drawn.sum() != truth.sum():
                raise RuntimeError("the vectorised masks no longer follow the renderer's rule: fix Ball.masks")
            post = posterior(rng, ball, state, truth, context, rows, cols, samples)
            if post is None:
                lost += 1
                continue
            p = ball.masks(flight(post, context + k, cfg)[:, context:], rows, cols).mean(0)  # (k, h, w) P(ball there)
            y = truth[context:].astype(np.float64)
            colour2 = float((((PALETTE[rng.integers(len(PALETTE))].astype(np.float64) - BACKGROUND) / 127.5) ** 2).mean())
            mse.append(((y - p) ** 2).sum(axis=(1, 2)) * colour2 / SIZE ** 2)  # (k,) over the whole frame
            sharp.append(((y - (p > 0.5)) ** 2).sum(axis=(1, 2)))  # pixels wrong when the likeliest mask is drawn
            spread.append(post.std(0) / np.array([cfg.width / SIZE] * 2 + [cfg.width / SIZE / cfg.dt] * 2))
        mse_a = np.array(mse)
        result["context"][str(context)] = {
            "balls": len(mse), "lost": lost,
            "psnr": round(float(np.mean(10 * np.log10(4.0 / (mse_a + ae_mse)))), 2) if ae_psnr is not None else None,
            "psnr_of_mean_mse_alone": round(float(10 * np.log10(4.0 / max(mse_a.mean(), 1e-12))), 2),
            "mse_alone": float(mse_a.mean()),
            "pixels_wrong_sharp_per_frame": round(float(np.mean(sharp)), 3),
            "posterior_sd_median": dict(zip(["x_px", "y_px", "vx_px_per_frame", "vy_px_per_frame"],
                                            np.round(np.median(np.array(spread), 0), 4).tolist())),
        }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--balls", type=int, default=40, help="balls per context length")
    ap.add_argument("--context", type=int, nargs="+", default=[4, 7], help="context lengths L, real frames")
    ap.add_argument("--k", type=int, default=2, help="frames predicted (one latent step of the shipped probe model)")
    ap.add_argument("--samples", type=int, default=300, help="posterior samples per ball")
    ap.add_argument("--autoencoder-psnr", type=float, default=None, help="the autoencoder's PSNR on such frames, added")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the result as JSON here")
    args = ap.parse_args()
    if args.balls < 1 or args.k < 1 or args.samples < ACCEPTED or min(args.context) < 1:
        sys.exit(f"probe_motion_bound: --balls, --k and --context must be >= 1 and --samples >= {ACCEPTED}")
    result = bound(args.balls, args.context, args.k, args.samples, args.autoencoder_psnr, args.seed)
    print(f"one free-flying ball, its next {args.k} frames from its last L (64 x 64, the random family's balls):")
    print(f"{'L':>3s} {'balls':>5s} {'PSNR alone':>10s} {'with AE':>8s} {'px wrong':>8s}  posterior sd (px, px/frame)")
    for context, r in result["context"].items():
        sd = r["posterior_sd_median"]
        with_ae = f"{r['psnr']:8.2f}" if r["psnr"] is not None else f"{'-':>8s}"
        print(f"{context:>3s} {r['balls']:5d} {r['psnr_of_mean_mse_alone']:10.2f} {with_ae} "
              f"{r['pixels_wrong_sharp_per_frame']:8.2f}  {sd['x_px']:.3f} {sd['y_px']:.3f} "
              f"{sd['vx_px_per_frame']:.4f} {sd['vy_px_per_frame']:.4f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
