"""Named probe scenarios: deterministic initial conditions for the probe world.

Each family isolates one thing an evaluator wants to measure from generated frames:

- ``permanence``: a ball rolls along the floor, passes fully behind a tall occluder and comes out
  the other side (then bounces off the far wall and passes behind it again).
- ``fall_bounce``: one to three balls fall from rest-ish in separate columns and bounce on the
  floor with a scenario-specific restitution; no contacts before the first floor hit.
- ``collision``: two balls slide along the floor towards each other (sometimes one waits at rest)
  and collide elastically before either reaches a wall.
- ``push``: a ball rests on the floor with the pusher level with it on its left, so the action
  ``right`` pushes it; sometimes a second resting ball further right gets hit in turn.
- ``random``: a mix of those ingredients: 2..MAX_BALLS balls anywhere with random velocities,
  0..MAX_OCCLUDERS occluders, the pusher anywhere free.

`make_scenario(family, seed)` is a pure function of its arguments.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from worldsim.envs.probe.physics import BOX, PhysicsConfig, WorldState
from worldsim.envs.probe.render import PALETTE

MAX_BALLS = 6  # the state arrays are padded to this many balls (= len(PALETTE))
MAX_OCCLUDERS = 2  # and to this many occluders
# fall_bounce's restitution is drawn from this range. Frames before the first floor hit cannot show it, so the
# probe scores a simulator against the trajectories of every value in it (`worldsim.eval.probe_suite`).
FALL_BOUNCE_RESTITUTION = (0.6, 0.9)
FAMILIES = ("permanence", "fall_bounce", "collision", "push", "random")
PUSHER_PARK = (0.35, 3.65)  # top-left corner, out of the way in the non-push families


@dataclass(frozen=True)
class Scenario:
    """Initial conditions of one probe episode, in world units (see `physics.PhysicsConfig`)."""

    family: str
    seed: int
    pos: np.ndarray  # (n, 2) float64, ball centres
    vel: np.ndarray  # (n, 2) float64
    radius: np.ndarray  # (n,) float64
    color: np.ndarray  # (n, 3) uint8, distinct rows of PALETTE
    restitution: float  # wall/floor restitution
    occluders: np.ndarray  # (m, 4) float64 rectangles (x0, y0, x1, y1), drawn over the balls
    pusher_pos: np.ndarray  # (2,) float64

    @property
    def n_balls(self) -> int:
        return int(self.radius.shape[0])

    def world_state(self) -> WorldState:
        """A fresh physics state for this scenario (mass proportional to area: uniform density)."""
        return WorldState(
            pos=self.pos.astype(np.float64).copy(),
            vel=self.vel.astype(np.float64).copy(),
            radius=self.radius.astype(np.float64).copy(),
            mass=np.pi * self.radius.astype(np.float64) ** 2,
            restitution=float(self.restitution),
            pusher_pos=self.pusher_pos.astype(np.float64).copy(),
            pusher_vel=np.zeros(2),
        )


def make_scenario(family: str, seed: int, cfg: PhysicsConfig | None = None) -> Scenario:
    """The scenario `seed` of probe family `family` (same arguments, same scenario).

    Raises:
        ValueError: `family` is not one of `FAMILIES`.
    """
    if family not in _BUILDERS:
        raise ValueError(f"unknown probe family {family!r}; known families: {', '.join(FAMILIES)}")
    cfg = cfg or PhysicsConfig()
    if (cfg.width, cfg.height) != BOX:
        raise ValueError(f"probe scenarios are laid out for a 4 x 4 m box, got {cfg.width} x {cfg.height}")
    rng = np.random.default_rng([zlib.crc32(family.encode()), int(seed)])
    parts = _BUILDERS[family](rng, cfg)
    n = len(parts["radius"])
    occ = np.asarray(parts.get("occluders", np.zeros((0, 4))), np.float64).reshape(-1, 4)
    return Scenario(
        family=family,
        seed=int(seed),
        pos=np.asarray(parts["pos"], np.float64).reshape(n, 2),
        vel=np.asarray(parts["vel"], np.float64).reshape(n, 2),
        radius=np.asarray(parts["radius"], np.float64),
        color=PALETTE[rng.permutation(len(PALETTE))[:n]],
        restitution=float(parts.get("restitution", 0.8)),
        occluders=occ,
        pusher_pos=np.asarray(parts.get("pusher_pos", PUSHER_PARK), np.float64),
    )


def _permanence(rng: np.random.Generator, cfg: PhysicsConfig) -> dict:
    w = rng.uniform(1.2, 1.5)  # wide enough to hide the ball for several frames
    cx = rng.uniform(1.8, 2.2)
    occluder = [cx - w / 2, 0.0, cx + w / 2, rng.uniform(1.2, 2.0)]
    r = rng.uniform(0.2, 0.28)
    speed = rng.uniform(1.0, 1.6)
    x = rng.uniform(r + 0.1, cx - w / 2 - r - 0.2)
    if rng.random() < 0.5:  # mirror: start right, roll left
        x, speed = cfg.width - x, -speed
        occluder = [cfg.width - occluder[2], 0.0, cfg.width - occluder[0], occluder[3]]
    return {
        "pos": [[x, r]], "vel": [[speed, 0.0]], "radius": [r],
        "occluders": [occluder], "restitution": rng.uniform(0.7, 0.95),
    }


def _fall_bounce(rng: np.random.Generator, cfg: PhysicsConfig) -> dict:
    k = int(rng.integers(1, 4))
    col = cfg.width / k
    radius = rng.uniform(0.2, 0.35, size=k)
    x = (np.arange(k) + 0.5) * col + rng.uniform(-0.1, 0.1, size=k)
    y = np.array([rng.uniform(1.5, 3.3 - r) for r in radius])
    vel = np.stack([rng.uniform(-0.2, 0.2, size=k), rng.uniform(-0.5, 0.5, size=k)], axis=1)
    return {
        "pos": np.stack([x, y], axis=1), "vel": vel, "radius": radius,
        "restitution": rng.uniform(*FALL_BOUNCE_RESTITUTION),
    }


def _collision(rng: np.random.Generator, cfg: PhysicsConfig) -> dict:
    radius = rng.uniform(0.22, 0.38, size=2)
    x = [rng.uniform(0.8, 1.4), rng.uniform(2.6, 3.2)]
    v = [rng.uniform(0.8, 2.0), -rng.uniform(0.8, 2.0)]
    if rng.random() < 0.3:  # one ball waits at rest for the other
        v[int(rng.integers(2))] = 0.0
    return {
        "pos": [[x[0], radius[0]], [x[1], radius[1]]], "vel": [[v[0], 0.0], [v[1], 0.0]],
        "radius": radius, "restitution": rng.uniform(0.7, 0.95),
    }


def _push(rng: np.random.Generator, cfg: PhysicsConfig) -> dict:
    r = rng.uniform(0.25, 0.35)
    x = rng.uniform(1.6, 2.4)
    pusher = [x - r - cfg.pusher_radius - rng.uniform(0.3, 0.8), r]  # level with the ball
    pos, radius = [[x, r]], [r]
    if rng.random() < 0.5:
        r2 = rng.uniform(0.2, 0.35)
        pos.append([rng.uniform(x + r + r2 + 0.4, cfg.width - r2 - 0.05), r2])
        radius.append(r2)
    return {
        "pos": pos, "vel": np.zeros((len(radius), 2)), "radius": radius,
        "pusher_pos": pusher, "restitution": rng.uniform(0.6, 0.9),
    }


def _random(rng: np.random.Generator, cfg: PhysicsConfig) -> dict:
    n = int(rng.integers(2, MAX_BALLS + 1))
    radius = rng.uniform(0.2, 0.35, size=n)
    circles: list[tuple[float, float, float]] = []
    pusher_at = _place(rng, cfg, cfg.pusher_radius, circles)
    circles.append((*pusher_at, cfg.pusher_radius))
    pos = []
    for r in radius:
        p = _place(rng, cfg, r, circles)
        circles.append((*p, r))
        pos.append(p)
    occluders = []
    for _ in range(int(rng.integers(0, MAX_OCCLUDERS + 1))):
        w, h = rng.uniform(0.6, 1.4), rng.uniform(0.8, 2.5)
        x0, y0 = rng.uniform(0, cfg.width - w), rng.uniform(0, cfg.height - h)
        occluders.append([x0, y0, x0 + w, y0 + h])
    return {
        "pos": pos, "vel": rng.uniform(-2.0, 2.0, size=(n, 2)), "radius": radius,
        "occluders": occluders, "pusher_pos": pusher_at, "restitution": rng.uniform(0.6, 0.95),
    }


def _place(rng: np.random.Generator, cfg: PhysicsConfig, r: float,
           taken: list[tuple[float, float, float]]) -> tuple[float, float]:
    """A uniformly random centre for a disc of radius `r` inside the box, clear of `taken`."""
    for _ in range(1000):
        x, y = rng.uniform(r, cfg.width - r), rng.uniform(r, cfg.height - r)
        if all((x - a) ** 2 + (y - b) ** 2 > (r + c + 0.05) ** 2 for a, b, c in taken):
            return float(x), float(y)
    raise RuntimeError("could not place a disc without overlap; too many objects for the box")


_BUILDERS = {
    "permanence": _permanence,
    "fall_bounce": _fall_bounce,
    "collision": _collision,
    "push": _push,
    "random": _random,
}
