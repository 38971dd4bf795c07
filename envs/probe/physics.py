"""Physics of the probe world: balls under gravity in a box, plus a kinematic pusher.

World units are metres and seconds, independent of any render size. The box spans
``x in [0, width]`` (right) and ``y in [0, height]`` (up); gravity pulls towards ``y = 0``.

One `step` advances the world by ``dt`` in ``substeps`` equal parts. Each substep:

1. the pusher moves at its commanded velocity, clamped inside the box (it is kinematic:
   infinite mass, not affected by gravity or balls);
2. every ball moves under constant gravity with the *exact* constant-acceleration update
   ``x += v h + g h^2 / 2``, ``v += g h``, so a ball in free flight follows the analytic
   parabola to rounding error;
3. ball-ball contacts get an elastic impulse along the line of centres (momentum and kinetic
   energy conserved exactly) and the overlap is removed in proportion to inverse mass;
4. pusher-ball contacts give the ball the pusher's normal velocity (a perfectly inelastic push:
   the ball is carried along, not batted away) and move the ball out of the pusher;
5. walls, floor and ceiling reflect the normal velocity with restitution ``e``; a ball that
   would bounce off the floor slower than ``rest_speed`` comes to rest on it instead of
   jittering forever.

Occluders are purely visual and live in `scenarios.Scenario`, not here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

GRAVITY = 9.81  # m/s^2
BOX = (4.0, 4.0)  # (width, height) of the box in metres: the default, and the one probe scenarios are laid out for


@dataclass
class PhysicsConfig:
    """Constants of the simulation (all in SI-like world units)."""

    width: float = BOX[0]  # box width in metres
    height: float = BOX[1]  # box height in metres
    gravity: float = GRAVITY  # downward acceleration, m/s^2
    dt: float = 1.0 / 15.0  # seconds per env step (render_fps = 1 / dt)
    substeps: int = 4  # integration substeps per env step; keeps fast balls from tunnelling
    rest_speed: float = 0.25  # floor bounces slower than this (m/s) stop the ball
    pusher_radius: float = 0.25  # the pusher is a disc of this radius
    pusher_speed: float = 2.0  # m/s while a move action is held


@dataclass
class WorldState:
    """The mutable state of one probe world.

    Arrays have a leading ball axis of length ``n`` (the balls present in this scenario).
    """

    pos: np.ndarray  # (n, 2) float64, ball centres in metres
    vel: np.ndarray  # (n, 2) float64, m/s
    radius: np.ndarray  # (n,) float64, metres
    mass: np.ndarray  # (n,) float64, arbitrary units (only ratios matter)
    restitution: float  # wall/floor/ceiling restitution in [0, 1]
    pusher_pos: np.ndarray = field(default_factory=lambda: np.zeros(2))  # (2,) float64
    pusher_vel: np.ndarray = field(default_factory=lambda: np.zeros(2))  # (2,) float64, last substep

    def copy(self) -> WorldState:
        return WorldState(
            self.pos.copy(), self.vel.copy(), self.radius.copy(), self.mass.copy(),
            self.restitution, self.pusher_pos.copy(), self.pusher_vel.copy(),
        )


def kinetic_energy(state: WorldState) -> float:
    """Total kinetic energy of the balls, ``sum m |v|^2 / 2``."""
    return float(0.5 * np.sum(state.mass * np.sum(state.vel**2, axis=1)))


def momentum(state: WorldState) -> np.ndarray:
    """Total momentum of the balls, shape (2,)."""
    return (state.mass[:, None] * state.vel).sum(axis=0)


def step(state: WorldState, pusher_cmd: np.ndarray, cfg: PhysicsConfig) -> None:
    """Advance `state` in place by ``cfg.dt``.

    Args:
        state: the world, modified in place.
        pusher_cmd: (2,) commanded pusher velocity in m/s (zero for no-op).
        cfg: the constants.
    """
    h = cfg.dt / cfg.substeps
    drift = np.array([0.0, -0.5 * cfg.gravity * h * h])  # exact displacement due to gravity
    kick = np.array([0.0, -cfg.gravity * h])
    ii, jj = _pairs(len(state.radius))
    pair_reach2 = (state.radius[ii] + state.radius[jj]) ** 2  # (P,)
    lo = state.radius[:, None]  # (n, 1): lowest allowed centre coordinate
    hi = np.array([cfg.width, cfg.height]) - state.radius[:, None]  # (n, 2)
    cmd = (float(pusher_cmd[0]), float(pusher_cmd[1]))
    for _ in range(cfg.substeps):
        _move_pusher(state, cmd, h, cfg)
        state.pos += state.vel * h + drift
        state.vel += kick
        _collide_balls(state, ii, jj, pair_reach2)
        _collide_pusher(state, cfg.pusher_radius)
        _collide_walls(state, lo, hi, cfg.rest_speed)


@functools.lru_cache(maxsize=None)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(i, j)`` of all ball pairs with ``i < j``."""
    return np.triu_indices(n, k=1)


def _move_pusher(state: WorldState, cmd: tuple[float, float], h: float, cfg: PhysicsConfig) -> None:
    r = cfg.pusher_radius
    x0, y0 = float(state.pusher_pos[0]), float(state.pusher_pos[1])
    x = min(max(x0 + cmd[0] * h, r), cfg.width - r)
    y = min(max(y0 + cmd[1] * h, r), cfg.height - r)
    state.pusher_pos = np.array([x, y])
    state.pusher_vel = np.array([(x - x0) / h, (y - y0) / h])  # what it actually did, after clamping


def _collide_balls(state: WorldState, ii: np.ndarray, jj: np.ndarray, reach2: np.ndarray) -> None:
    if len(ii) == 0:
        return
    d = state.pos[jj] - state.pos[ii]  # (P, 2)
    hit = np.nonzero((d * d).sum(axis=1) < reach2)[0]
    for k in hit:  # rare: only touching pairs
        i, j = ii[k], jj[k]
        delta = state.pos[j] - state.pos[i]
        dist = float(np.hypot(delta[0], delta[1]))
        normal = delta / dist if dist > 1e-12 else np.array([1.0, 0.0])
        mi, mj = state.mass[i], state.mass[j]
        approach = float(np.dot(state.vel[i] - state.vel[j], normal))
        if approach > 0:  # moving towards each other: 1-D elastic collision along the normal
            impulse = 2.0 * mi * mj / (mi + mj) * approach
            state.vel[i] -= impulse / mi * normal
            state.vel[j] += impulse / mj * normal
        overlap = state.radius[i] + state.radius[j] - dist
        state.pos[i] -= overlap * mj / (mi + mj) * normal
        state.pos[j] += overlap * mi / (mi + mj) * normal


def _collide_pusher(state: WorldState, pusher_radius: float) -> None:
    delta = state.pos - state.pusher_pos  # (n, 2)
    reach = state.radius + pusher_radius  # (n,)
    for i in np.nonzero((delta * delta).sum(axis=1) < reach * reach)[0]:
        dist = float(np.hypot(delta[i, 0], delta[i, 1]))
        normal = delta[i] / dist if dist > 1e-12 else np.array([0.0, 1.0])
        rel = float(np.dot(state.vel[i] - state.pusher_vel, normal))
        if rel < 0:  # ball slower than the pusher along the normal: it is carried along
            state.vel[i] -= rel * normal
        state.pos[i] = state.pusher_pos + reach[i] * normal


def _collide_walls(state: WorldState, lo: np.ndarray, hi: np.ndarray, rest_speed: float) -> None:
    """Clamp balls into the box, reflecting the normal velocity with restitution.

    Args:
        lo: (n, 1) lowest allowed centre coordinate (the radius); hi: (n, 2) highest.
    """
    pos, vel, e = state.pos, state.vel, state.restitution
    below, above = pos < lo, pos > hi  # (n, 2) each
    if not (below.any() or above.any()):
        return
    np.clip(pos, lo, hi, out=pos)
    bounce = (below & (vel < 0)) | (above & (vel > 0))
    vel[bounce] *= -e
    # floor: a bounce too slow to matter ends in rest, so resting balls do not jitter
    settle = below[:, 1] & (np.abs(vel[:, 1]) < rest_speed)
    vel[settle, 1] = 0.0
