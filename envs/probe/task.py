"""`ProbePushTaskEnv`: the probe world as an RL task with a reward. Push the target ball onto the goal zone.

Each episode is a "push" scenario (the target ball, ball 0, rests on the floor with the pusher to
its left, sometimes a second ball further right) plus a goal zone: a band of the floor, drawn in
`ZONE` under the balls, ``ZONE_WIDTH`` metres wide and somewhere to the right of the target ball.
The episode terminates with reward 1 the step the target ball's centre is over the zone (and
resting low, below ``SUCCESS_HEIGHT``); every other step pays 0, and the episode is truncated after
``max_episode_steps`` steps. Actions, observations and ``info["state"]`` are the probe world's,
with ``info["zone"] = (x0, x1)`` in metres. Registered as ``worldsim-real/ProbePush-v0``.

Measured (64x64, 64 steps): a random policy succeeds in 22 of 100 episodes (seeds 0-99); the scripted
`PushAgent` (walk left of the nearest ball, level with it, push right) in 9 of 10 (it misses when the
nearest ball is not the target), usually within 15 steps: the task separates agents that act on what
they see from ones that do not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from worldsim.envs.probe.env import ProbeWorldEnv
from worldsim.envs.probe.render import BACKGROUND

ZONE = np.array([60, 90, 60], np.uint8)  # muted green: no saturated ball hue, distinct from the background
ZONE_WIDTH = 0.6  # metres
ZONE_HEIGHT = 0.12  # the band drawn on the floor, metres
SUCCESS_HEIGHT = 0.6  # the target ball's centre must be this low (on or near the floor), metres


class ProbePushTaskEnv(ProbeWorldEnv):
    """Push the target ball onto the goal zone; reward 1 and termination on success (module docstring)."""

    def __init__(self, size: int | tuple[int, int] = 64, max_episode_steps: int = 64, render_mode: str | None = None,
                 physics=None) -> None:
        super().__init__(size=size, family="push", max_episode_steps=max_episode_steps, render_mode=render_mode,
                         physics=physics)
        self.zone = (0.0, 0.0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        if options.get("family", "push") != "push":
            raise ValueError("the push task is played on push scenarios only")
        obs, info = super().reset(seed=seed, options=options)
        x, r = float(self.world.pos[0, 0]), float(self.world.radius[0])
        lo = x + r + 0.5  # at least half a metre of pushing, never already on the zone
        hi = self.physics.width - ZONE_WIDTH - 0.05
        start = float(self.np_random.uniform(lo, max(lo, hi)))
        self.zone = (start, min(start + ZONE_WIDTH, self.physics.width))
        self._frame = self._draw()
        return self._frame.copy(), self._info()

    def step(self, action: int):
        obs, _, _, truncated, info = super().step(action)
        x, y = self.world.pos[0]
        success = bool(self.zone[0] <= x <= self.zone[1] and y <= SUCCESS_HEIGHT)
        return obs, float(success), success, truncated and not success, info

    def _draw(self) -> np.ndarray:
        img = super()._draw()
        if self.zone[1] > self.zone[0]:
            c0, c1 = self._renderer._cols(*self.zone)
            r0, r1 = self._renderer._rows(0.0, ZONE_HEIGHT)
            band = img[r0:r1, c0:c1]
            band[(band == BACKGROUND).all(axis=-1)] = ZONE  # under the balls and the pusher
        return img

    def _info(self) -> dict[str, Any]:
        return {**super()._info(), "zone": self.zone}
