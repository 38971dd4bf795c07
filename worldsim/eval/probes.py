"""Physics and object-permanence probes scored from pixels, with ground truth from the probe world.

Every ball of the probe world is drawn in its own saturated palette colour (`envs.probe.render`),
so its position can be read from any frame, real or generated: the centroid of the pixels within
`color_tol` (RGB distance) of its colour. Blurred edges of a decoded frame fall outside the
tolerance and simply do not count. A ball counts as *seen* when at least `min_area_frac` of its
expected pixel area matches.

The ground truth is ``info["state"]`` of the real probe world run with the same actions (stacked
over time: ``present`` (T, B), ``position`` (T, B, 2) in metres, ``visible`` (T, B), ``color``
(T, B, 3), ``pusher_position`` (T, 2)). Frames ``(T, H, W, 3)`` are aligned with it row by row;
``start`` is the first frame that was generated rather than given as context (horizon 1).

Per episode each family gives ``passed`` (True/False, or None when the episode holds no event
of that kind after ``start``) and numbers:

- ``identity`` (every family): in every frame each fully visible ball is seen, each fully hidden
  ball is not, and no colour of a ball that is not in the scene appears (count and identity).
- ``permanence``: each time a ball comes fully back into view after being fully hidden it is
  seen, in its own colour, within `pos_tol_px` of where it truly is; while hidden it is not seen.
- ``fall_bounce``: centroid error in pixels against the true trajectory at every frame (curve
  per horizon); passes when every fully visible ball is seen within `pos_tol_px` throughout of the
  true trajectory or of the one under another restitution of the scenario's range, which frames
  before the first floor hit cannot show (`passed_strict`: of the true one).
- ``collision``: the direction (left, right, or still) each ball moves over `post_window` steps
  after the first collision matches the truth.
- ``push``: from the first step a ball moves, over `push_window` steps, the ball's displacement
  matches the truth within `pos_tol_px` and it moves the same way as the pusher.

Pixel tolerances are given for a 64-pixel-high frame and scale with the frame height.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worldsim.envs.probe.physics import BOX
from worldsim.envs.probe.render import PALETTE, PUSHER, world_to_pixel

FAMILY_CHECKS = ("identity", "permanence", "fall_bounce", "collision", "push")


@dataclass
class ProbeScoreConfig:
    """Tolerances of the pixel probes (pixels are those of a 64-pixel-high frame)."""

    color_tol: float = 60.0  # RGB distance to a ball colour; palette colours are >= 190 apart
    min_area_frac: float = 0.3  # seen when this fraction of the expected disc area matches
    pos_tol_px: float = 2.0  # position tolerance
    direction_px: float = 1.0  # collision: moves less than this over the window = "still"
    full_visible: float = 0.999  # truth visible fraction at or above which a ball must be seen
    post_window: int = 4  # collision: steps after the collision over which directions are read
    push_window: int = 8  # push: steps after contact over which displacements are compared
    box: tuple[float, float] = BOX  # world (width, height) in metres


@dataclass
class Detections:
    """Balls found in frames by colour; slot b is the ball whose colour is ``colors[b]``."""

    centroid: np.ndarray  # (T, B, 2) float64 (row, col) pixel coordinates; NaN where none matched
    pixels: np.ndarray  # (T, B) int: matching pixels
    seen: np.ndarray  # (T, B) bool: pixels >= the slot's area threshold
    stray: np.ndarray  # (T,) int: pixels of palette colours of balls that are not in the scene
    size: tuple[int, int]  # frame (H, W)


@dataclass
class ProbeResult:
    """One check on one episode."""

    check: str  # one of FAMILY_CHECKS
    passed: bool | None  # None: the episode has no event of this kind after `start`
    details: dict[str, Any] = field(default_factory=dict)


def _scale(frames: np.ndarray) -> float:
    return frames.shape[1] / 64.0


def _colour_mask(frames: np.ndarray, colour: np.ndarray, tol: float) -> np.ndarray:
    """(T, H, W) bool: pixels within `tol` of `colour`."""
    d = frames.astype(np.float32) - np.asarray(colour, np.float32)  # (T, H, W, 3)
    return np.einsum("thwc,thwc->thw", d, d) <= tol * tol


def _centroids(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame centroid (T, 2) (NaN when empty) and count (T,) of a (T, H, W) mask."""
    t, h, w = mask.shape
    n = mask.sum(axis=(1, 2))  # (T,)
    rows = (mask.sum(axis=2) * (np.arange(h) + 0.5)).sum(axis=1)  # (T,)
    cols = (mask.sum(axis=1) * (np.arange(w) + 0.5)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.stack([rows / n, cols / n], axis=1)  # (T, 2)
    return c, n


def expected_area_px(radius: np.ndarray, size: tuple[int, int], box: tuple[float, float] = BOX) -> np.ndarray:
    """Pixel area of discs of `radius` metres in an (H, W) frame of the `box`: pi r_row r_col."""
    h, w = size
    return math.pi * (np.asarray(radius) / box[1] * h) * (np.asarray(radius) / box[0] * w)


def detect_balls(frames: np.ndarray, state: dict[str, np.ndarray], cfg: ProbeScoreConfig | None = None) -> Detections:
    """Find the scenario's balls in `frames` by colour.

    Args:
        frames: uint8 (T, H, W, 3).
        state: ground truth stacked over time (the first row's ``present``, ``color``, ``radius``
            name the balls; colours and radii are constant within an episode).
    """
    cfg = cfg or ProbeScoreConfig()
    frames = _check_frames(frames, state)
    present = np.asarray(state["present"][0], bool)
    colors, radius = state["color"][0][present], state["radius"][0][present]
    area = expected_area_px(radius, frames.shape[1:3], cfg.box)  # (B,)
    cents, counts = [], []
    for c in colors:
        cent, n = _centroids(_colour_mask(frames, c, cfg.color_tol))
        cents.append(cent)
        counts.append(n)
    centroid = np.stack(cents, axis=1) if cents else np.zeros((len(frames), 0, 2))  # (T, B, 2)
    pixels = np.stack(counts, axis=1) if counts else np.zeros((len(frames), 0), int)  # (T, B)
    in_scene = {tuple(int(v) for v in c) for c in colors}
    stray = np.zeros(len(frames), int)
    for c in PALETTE:
        if tuple(int(v) for v in c) not in in_scene:
            stray += _colour_mask(frames, c, cfg.color_tol).sum(axis=(1, 2))
    return Detections(centroid, pixels, pixels >= cfg.min_area_frac * area[None, :], stray, frames.shape[1:3])


def true_pixels(state: dict[str, np.ndarray], size: tuple[int, int], box: tuple[float, float] = BOX) -> np.ndarray:
    """(T, B, 2) true ball centres in pixel ``(row, col)`` for the balls present in the scene."""
    present = np.asarray(state["present"][0], bool)
    return world_to_pixel(np.asarray(state["position"])[:, present], size, *box)


def fully_visible(state: dict[str, np.ndarray], cfg: ProbeScoreConfig) -> np.ndarray:
    """(T, B) bool: the ball is clear of occluders (``visible``) and of every ball drawn over it.

    Balls are drawn in index order, and the physics can briefly squeeze two balls into each
    other (e.g. against a wall under the pusher), so a later ball may cover part of an earlier one.
    """
    present = np.asarray(state["present"][0], bool)
    vis = np.asarray(state["visible"])[:, present] >= cfg.full_visible  # (T, B)
    pos = np.asarray(state["position"])[:, present]  # (T, B, 2)
    r = np.asarray(state["radius"][0])[present]  # (B,)
    gap = np.linalg.norm(pos[:, :, None] - pos[:, None, :], axis=-1) - (r[:, None] + r[None, :])  # (T, B, B)
    covered = np.triu(np.ones((len(r), len(r)), bool), k=1)[None] & (gap < 0)  # j > b overlaps b
    return vis & ~covered.any(axis=2)


def _check_frames(frames: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"probe frames must be (T, H, W, 3) RGB, got shape {frames.shape}")
    if len(frames) != len(state["position"]):
        raise ValueError(f"{len(frames)} frames but {len(state['position'])} ground-truth states; they must align")
    return frames


def score_identity(det: Detections, state: dict, start: int, cfg: ProbeScoreConfig) -> ProbeResult:
    """Count and identity: fully visible balls seen, fully hidden balls unseen, no stray colours."""
    present = np.asarray(state["present"][0], bool)
    vis = np.asarray(state["visible"])[:, present]  # (T, B)
    must_see = fully_visible(state, cfg)
    must_not = vis <= 0.0
    smallest = expected_area_px(state["radius"][0][present], det.size, cfg.box).min(initial=np.inf)
    ok = ~((must_see & ~det.seen) | (must_not & det.seen)).any(axis=1)  # (T,)
    ok &= det.stray < cfg.min_area_frac * smallest
    ok = ok[start:]
    bad = np.flatnonzero(~ok)
    return ProbeResult("identity", bool(ok.all()), {
        "frames_ok": float(ok.mean()) if ok.size else 1.0,
        "first_bad_frame": int(bad[0] + start) if bad.size else None,
    })


def score_permanence(det: Detections, state: dict, start: int, cfg: ProbeScoreConfig, scale: float) -> ProbeResult:
    """Each reappearance after full occlusion: seen, in its colour, within tolerance; unseen while hidden."""
    present = np.asarray(state["present"][0], bool)
    vis = np.asarray(state["visible"])[:, present]  # (T, B)
    clear = fully_visible(state, cfg)
    truth = true_pixels(state, det.size, cfg.box)
    tol = cfg.pos_tol_px * scale
    events, errors, hidden_seen = 0, [], 0
    passed = True
    for b in range(vis.shape[1]):
        t = 0
        while t < len(vis):
            if vis[t, b] > 0.0:
                t += 1
                continue
            hide = t
            while t < len(vis) and vis[t, b] <= 0.0:
                t += 1
            back = t
            while back < len(vis) and not clear[back, b]:
                back += 1
            if back >= len(vis) or back < start:
                continue
            events += 1
            hidden = det.seen[max(hide, start):t, b]
            hidden_seen += int(hidden.sum())
            err = float(np.linalg.norm(det.centroid[back, b] - truth[back, b])) if det.seen[back, b] else math.inf
            errors.append(err)
            passed &= err <= tol and not hidden.any()
    if events == 0:
        return ProbeResult("permanence", None, {"events": 0})
    return ProbeResult("permanence", bool(passed), {
        "events": events, "reappear_error_px": errors, "frames_seen_while_hidden": hidden_seen,
    })


def trajectory_error(det: Detections, state: dict, cfg: ProbeScoreConfig) -> np.ndarray:
    """(T,) mean pixel error of fully visible balls per frame (inf if one is unseen; NaN if none visible)."""
    vis = fully_visible(state, cfg)  # (T, B)
    err = np.linalg.norm(det.centroid - true_pixels(state, det.size, cfg.box), axis=-1)  # (T, B)
    err = np.where(det.seen, err, np.inf)
    out = np.full(len(err), np.nan)
    for t in range(len(err)):
        if vis[t].any():
            out[t] = err[t, vis[t]].mean()
    return out


def score_fall_bounce(det: Detections, state: dict, start: int, cfg: ProbeScoreConfig, scale: float,
                      admissible: list[tuple[float, dict]] | None = None) -> ProbeResult:
    """Trajectory error in pixels per horizon; passes when every visible ball stays within tolerance of the true
    trajectory or of an admissible one.

    `admissible`: (restitution, ground truth) of the same scenario and actions under other values of its
    restitution from the first generated frame on (`probe_suite.admissible_states`). Frames before the first
    floor hit cannot show the restitution, so a simulator that knows everything else still misses the truth
    after the bounce: perfect physics with the range's best constant passes 0-2 of 10 episodes. It passes
    when it follows the physics under some restitution of the scenario's range; `passed_strict` says whether it
    followed the true one.
    """
    err = trajectory_error(det, state, cfg)[start:]  # horizon h is err[h - 1]
    valid = ~np.isnan(err)
    if not valid.any():
        return ProbeResult("fall_bounce", None, {})
    worst = float(np.max(err[valid]))
    best, fitted = worst, None
    for restitution, other in admissible or []:
        alt = trajectory_error(det, other, cfg)[start:]
        alt_worst = float(np.max(alt[~np.isnan(alt)])) if (~np.isnan(alt)).any() else math.inf
        if alt_worst < best:
            best, fitted = alt_worst, float(restitution)
    tol = cfg.pos_tol_px * scale
    return ProbeResult("fall_bounce", best <= tol, {
        "error_px_per_horizon": [None if np.isnan(e) else float(e) for e in err],
        "max_error_px": worst, "mean_error_px": float(np.mean(err[valid])), "passed_strict": worst <= tol,
        "max_error_px_admissible": best, "restitution_followed": fitted,
    })


def _direction(dx: np.ndarray, still: float) -> np.ndarray:
    return np.where(np.abs(dx) < still, 0, np.sign(dx)).astype(int)


def score_collision(det: Detections, state: dict, start: int, cfg: ProbeScoreConfig, scale: float) -> ProbeResult:
    """Post-collision directions (left / still / right) of every ball, read over `post_window` steps."""
    present = np.asarray(state["present"][0], bool)
    vx = np.asarray(state["velocity"])[:, present, 0]  # (T, B)
    changed = np.flatnonzero((np.abs(vx - vx[0]) > 1e-3).any(axis=1))
    if changed.size == 0:
        return ProbeResult("collision", None, {"reason": "no collision in the episode"})
    t0 = max(int(changed[0]), start)
    t1 = t0 + cfg.post_window
    if t1 >= len(vx):
        return ProbeResult("collision", None, {"reason": "collision too close to the end"})
    truth = true_pixels(state, det.size, cfg.box)
    still = cfg.direction_px * scale
    true_dir = _direction(truth[t1, :, 1] - truth[t0, :, 1], still)
    seen = det.seen[t0] & det.seen[t1]
    det_dx = det.centroid[t1, :, 1] - det.centroid[t0, :, 1]
    # A margin either side of the "still" band keeps detection noise of the real frames from flipping it.
    ok = np.where(true_dir == 0, np.abs(det_dx) < 2 * still, np.sign(det_dx) == true_dir) & seen
    ok &= (true_dir == 0) | (np.abs(det_dx) >= still / 2)
    return ProbeResult("collision", bool(ok.all()), {
        "collision_frame": t0, "true_direction": true_dir.tolist(),
        "seen_dx_px": [float(v) for v in det_dx],
    })


def score_push(det: Detections, state: dict, start: int, frames: np.ndarray, cfg: ProbeScoreConfig,
               scale: float) -> ProbeResult:
    """The first ball the pusher moves follows the truth and moves the way the pusher does."""
    present = np.asarray(state["present"][0], bool)
    speed = np.linalg.norm(np.asarray(state["velocity"])[:, present], axis=-1)  # (T, B)
    moving = np.argwhere(speed > 0.05)
    if moving.size == 0:
        return ProbeResult("push", None, {"reason": "no ball moved"})
    t0, b = int(moving[0, 0]), int(moving[0, 1])
    t0 = max(t0 - 1, start)  # from the last frame before it moved (or the first generated one)
    t1 = min(t0 + cfg.push_window, len(speed) - 1)
    if t1 <= t0:
        return ProbeResult("push", None, {"reason": "push too close to the end"})
    truth = true_pixels(state, det.size, cfg.box)
    true_d = truth[t1, b] - truth[t0, b]
    tol = cfg.pos_tol_px * scale
    if not (det.seen[t0, b] and det.seen[t1, b]):
        return ProbeResult("push", False, {"reason": "ball not seen", "push_frame": t0})
    seen_d = det.centroid[t1, b] - det.centroid[t0, b]
    mask = _colour_mask(frames[[t0, t1]], PUSHER, cfg.color_tol)
    pusher_c, pusher_n = _centroids(mask)
    pusher_d = pusher_c[1] - pusher_c[0]
    same_way = bool(pusher_n.min() > 0 and np.dot(pusher_d, seen_d) > 0)
    passed = bool(np.linalg.norm(seen_d - true_d) <= tol and same_way)
    return ProbeResult("push", passed, {
        "push_frame": t0, "true_displacement_px": true_d.tolist(), "seen_displacement_px": seen_d.tolist(),
        "pusher_displacement_px": pusher_d.tolist(),
    })


def score_episode(frames: np.ndarray, state: dict[str, np.ndarray], family: str, start: int = 1,
                  cfg: ProbeScoreConfig | None = None,
                  admissible: list[tuple[float, dict]] | None = None) -> list[ProbeResult]:
    """Score one episode: ``identity`` always, plus the check of its `family` (``random``: identity only).

    Args:
        frames: uint8 (T, H, W, 3), real or generated, aligned with `state` (T rows each).
        state: the real world's ground truth for the same seed and actions, stacked over time.
        family: the probe family the episode was made from.
        start: first frame that was generated (earlier frames were context and are not scored).
        admissible: fall_bounce only: (restitution, ground truth) under the other restitutions of the scenario's
            range (see `score_fall_bounce`).
    """
    cfg = cfg or ProbeScoreConfig()
    if not 0 <= start < len(frames):
        raise ValueError(f"start must be a frame index in [0, {len(frames)}), got {start}")
    det = detect_balls(frames, state, cfg)
    scale = _scale(np.asarray(frames))
    results = [score_identity(det, state, start, cfg)]
    if family == "permanence":
        results.append(score_permanence(det, state, start, cfg, scale))
    elif family == "fall_bounce":
        results.append(score_fall_bounce(det, state, start, cfg, scale, admissible))
    elif family == "collision":
        results.append(score_collision(det, state, start, cfg, scale))
    elif family == "push":
        results.append(score_push(det, state, start, np.asarray(frames), cfg, scale))
    elif family != "random":
        raise ValueError(f"unknown probe family {family!r}; known: permanence, fall_bounce, collision, push, random")
    return results


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% for z = 1.96); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(results: list[ProbeResult]) -> dict[str, dict[str, Any]]:
    """Accuracy per check over episodes, with a 95% Wilson interval; None-results are counted apart."""
    out: dict[str, dict[str, Any]] = {}
    for check in FAMILY_CHECKS:
        rs = [r for r in results if r.check == check]
        if not rs:
            continue
        scored = [r for r in rs if r.passed is not None]
        k = sum(bool(r.passed) for r in scored)
        lo, hi = wilson_interval(k, len(scored))
        out[check] = {"accuracy": k / len(scored) if scored else None, "ci95": [lo, hi],
                      "passed": k, "scored": len(scored), "no_event": len(rs) - len(scored)}
    return out
