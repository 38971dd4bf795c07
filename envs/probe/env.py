"""`ProbeWorldEnv`: the probe world behind the Gymnasium adapter contract.

Observation: ``(H, W, 3)`` uint8 RGB frame of the whole 4 x 4 m box (see `render`).

Actions, ``Discrete(5)``, move the pusher at ``PhysicsConfig.pusher_speed`` for one step:

====  ========  =============================
 id   name      pusher velocity
====  ========  =============================
 0    noop      (0, 0): the pusher stays put
 1    left      (-speed, 0)
 2    right     (+speed, 0)
 3    up        (0, +speed)
 4    down      (0, -speed)
====  ========  =============================

Reward is always 0 and episodes never terminate; they are truncated after
``max_episode_steps`` steps. ``reset(seed=s)`` draws the scenario seed from the env's seeded
generator, so the same ``s`` gives the same episode and ``reset()`` continues a deterministic
sequence; ``reset(options={"family": "permanence", "scenario_seed": 7})`` asks for one scenario
exactly (either key may be left out). ``family`` may also be a list of families: each reset without
a family option draws one of them uniformly from the same generator (repeat a name to weigh it
more), so one store can hold several families, e.g. ``env.kwargs.family=[random,random,permanence,
fall_bounce,collision,push]`` for `worldsim collect`.

``info["state"]`` (every reset and step) holds the ground truth with fixed shapes, padded to
``MAX_BALLS`` balls and ``MAX_OCCLUDERS`` occluders; `ProbeWorldEnv.state_spec` lists them:

- ``present`` (MAX_BALLS,) bool: which ball slots are in use.
- ``position`` (MAX_BALLS, 2) float32: ball centre ``(x, y)`` in metres, y up; 0 when absent.
- ``velocity`` (MAX_BALLS, 2) float32: m/s.
- ``radius`` (MAX_BALLS,) float32: metres.
- ``color`` (MAX_BALLS, 3) uint8: the RGB the ball is drawn in (distinct per ball).
- ``visible`` (MAX_BALLS,) float32 in [0, 1]: fraction of the ball not behind an occluder,
  computed from geometry (see `occlusion`); 0 for absent slots.
- ``pusher_position`` (2,) float32, ``pusher_velocity`` (2,) float32.
- ``occluders`` (MAX_OCCLUDERS, 4) float32 ``(x0, y0, x1, y1)``; ``occluder_present``
  (MAX_OCCLUDERS,) bool.

``info`` also carries ``family`` (str) and ``scenario_seed`` (int) of the episode.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldsim.envs.probe.occlusion import visible_fraction
from worldsim.envs.probe.physics import PhysicsConfig, WorldState, step
from worldsim.envs.frame_size import LastFrameRender, parse_size
from worldsim.envs.probe.render import Renderer
from worldsim.envs.probe.scenarios import FAMILIES, MAX_BALLS, MAX_OCCLUDERS, Scenario, make_scenario

ACTION_NAMES = ("noop", "left", "right", "up", "down")
_DIRECTIONS = np.array([[0, 0], [-1, 0], [1, 0], [0, 1], [0, -1]], np.float64)  # (5, 2)


class ProbeWorldEnv(LastFrameRender, gym.Env):
    """Balls, gravity, bounces, collisions, occluders and a pusher, with ground-truth state."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        size: int | tuple[int, int] = 64,
        family: str | list[str] | tuple[str, ...] = "random",
        max_episode_steps: int = 64,
        render_mode: str | None = None,
        physics: PhysicsConfig | None = None,
    ):
        families = [family] if isinstance(family, str) else [str(f) for f in family]
        if not families:
            raise ValueError(f"family must name at least one probe family; known families: {', '.join(FAMILIES)}")
        for f in families:
            if f not in FAMILIES:
                raise ValueError(f"unknown probe family {f!r}; known families: {', '.join(FAMILIES)}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.physics = physics or PhysicsConfig()
        self.family = family if isinstance(family, str) else tuple(families)
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.physics.dt)}
        self._renderer = Renderer(parse_size(size), self.physics.width, self.physics.height)
        h, w = self._renderer.size
        self.observation_space = spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.action_space = spaces.Discrete(len(ACTION_NAMES))
        self.scenario: Scenario | None = None
        self.world: WorldState | None = None
        self._frame: np.ndarray | None = None
        self._t = 0

    @staticmethod
    def state_spec() -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of every array in ``info["state"]``."""
        f32, b = np.dtype(np.float32), np.dtype(np.bool_)
        return {
            "present": ((MAX_BALLS,), b),
            "position": ((MAX_BALLS, 2), f32),
            "velocity": ((MAX_BALLS, 2), f32),
            "radius": ((MAX_BALLS,), f32),
            "color": ((MAX_BALLS, 3), np.dtype(np.uint8)),
            "visible": ((MAX_BALLS,), f32),
            "pusher_position": ((2,), f32),
            "pusher_velocity": ((2,), f32),
            "occluders": ((MAX_OCCLUDERS, 4), f32),
            "occluder_present": ((MAX_OCCLUDERS,), b),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"family", "scenario_seed"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected 'family' and/or 'scenario_seed'")
        family = options.get("family", self.family)
        if not isinstance(family, str):  # a list of families: one drawn per reset
            family = family[int(self.np_random.integers(len(family)))]
        # Always draw, so the generator advances the same way whether or not a seed is given.
        drawn = int(self.np_random.integers(0, 2**31 - 1))
        scenario_seed = int(options.get("scenario_seed", drawn))
        self.scenario = make_scenario(family, scenario_seed, self.physics)
        if self.scenario.n_balls > MAX_BALLS or len(self.scenario.occluders) > MAX_OCCLUDERS:
            raise ValueError("scenario exceeds MAX_BALLS or MAX_OCCLUDERS")
        self.world = self.scenario.world_state()
        self._t = 0
        self._frame = self._draw()
        return self._frame.copy(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.world is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}; actions: {ACTION_NAMES}")
        step(self.world, _DIRECTIONS[int(action)] * self.physics.pusher_speed, self.physics)
        self._t += 1
        self._frame = self._draw()
        truncated = self._t >= self.max_episode_steps
        return self._frame.copy(), 0.0, False, truncated, self._info()

    def _draw(self) -> np.ndarray:
        s, w = self.scenario, self.world
        return self._renderer.render(w.pos, w.radius, s.color, w.pusher_pos, self.physics.pusher_radius, s.occluders)

    def _info(self) -> dict[str, Any]:
        return {"state": self._state(), "family": self.scenario.family, "scenario_seed": self.scenario.seed}

    def _state(self) -> dict[str, np.ndarray]:
        s, w = self.scenario, self.world
        n, m = s.n_balls, len(s.occluders)
        out = {k: np.zeros(shape, dtype) for k, (shape, dtype) in self.state_spec().items()}
        out["present"][:n] = True
        out["position"][:n] = w.pos
        out["velocity"][:n] = w.vel
        out["radius"][:n] = w.radius
        out["color"][:n] = s.color
        out["visible"][:n] = visible_fraction(w.pos, w.radius, s.occluders)
        out["pusher_position"][:] = w.pusher_pos
        out["pusher_velocity"][:] = w.pusher_vel
        out["occluders"][:m] = s.occluders
        out["occluder_present"][:m] = True
        return out
