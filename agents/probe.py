"""Scripted agents for the probe world (`envs.probe`): they read the frame, not the state.

Both act from pixels only (the pusher is the white disc, balls are the saturated palette
colours), so the same agent drives the real probe world and the learned simulator.

- `NoopAgent`: always action 0 (``noop``). Right for the families where the pusher must stay
  out of the way (permanence, fall_bounce, collision).
- `PushAgent`: lines the pusher up with the nearest ball from its left, then pushes ``right``.
  In the ``push`` family the pusher starts level with the ball on its left, so it pushes at once.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces

from worldsim.envs.probe.env import ACTION_NAMES
from worldsim.envs.probe.render import PALETTE, PUSHER

NOOP, LEFT, RIGHT, UP, DOWN = (ACTION_NAMES.index(n) for n in ("noop", "left", "right", "up", "down"))
COLOR_TOLERANCE = 60.0  # max RGB distance of a pixel from a reference colour to count as that colour


def _check_probe_space(action_space: gymnasium.Space, who: str) -> None:
    if not (isinstance(action_space, spaces.Discrete) and action_space.n == len(ACTION_NAMES)):
        raise ValueError(f"{who} drives the probe world's Discrete({len(ACTION_NAMES)}) pusher, got {action_space}")


def _check_batch(obs: np.ndarray, num_envs: int, who: str) -> np.ndarray:
    obs = np.asarray(obs)
    if obs.ndim != 4 or obs.shape[-1] != 3 or len(obs) != num_envs:
        raise ValueError(f"{who} acts for {num_envs} worlds on (N, H, W, 3) frames, got shape {obs.shape}")
    return obs


def colour_centroid(frame: np.ndarray, colour: np.ndarray, tol: float = COLOR_TOLERANCE) -> tuple[np.ndarray, int]:
    """Centroid ``(row, col)`` (pixel-centre coordinates, +0.5) of the pixels near `colour`.

    Args:
        frame: uint8 (H, W, 3). colour: (3,) RGB.
    Returns:
        ((2,) float64 centroid, or NaNs when no pixel matches; number of matching pixels).
    """
    d = np.linalg.norm(frame.astype(np.float32) - np.asarray(colour, np.float32), axis=-1)  # (H, W)
    rows, cols = np.nonzero(d <= tol)
    if rows.size == 0:
        return np.full(2, np.nan), 0
    return np.array([rows.mean() + 0.5, cols.mean() + 0.5]), int(rows.size)


class NoopAgent:
    """Always ``noop`` (action 0): the pusher stays where the scenario put it."""

    def __init__(self, action_space: gymnasium.Space, num_envs: int, seed: int | None = None):
        _check_probe_space(action_space, "NoopAgent")
        self.action_space, self.num_envs = action_space, num_envs

    def act(self, obs: np.ndarray) -> np.ndarray:
        _check_batch(obs, self.num_envs, "NoopAgent")
        return np.full(self.num_envs, NOOP, dtype=np.int64)

    def reset(self, mask: np.ndarray, seeds: list[int | None] | None = None) -> None:
        pass


class PushAgent:
    """Drives the pusher to the left of the nearest ball, level with it, then pushes right.

    Per frame: find the pusher (white) and the balls (palette colours); if the pusher is not
    left of the nearest ball (by centroid column) it moves left; if it is not level with it (more than `level_px`
    rows apart) it moves up or down; otherwise it moves right, pushing the ball. With no pusher
    or no ball in view it does nothing.
    """

    def __init__(self, action_space: gymnasium.Space, num_envs: int, seed: int | None = None,
                 level_px: float = 1.0):
        _check_probe_space(action_space, "PushAgent")
        self.action_space, self.num_envs, self.level_px = action_space, num_envs, level_px

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = _check_batch(obs, self.num_envs, "PushAgent")
        return np.array([self._act_one(frame) for frame in obs], dtype=np.int64)

    def _act_one(self, frame: np.ndarray) -> int:
        pusher, n = colour_centroid(frame, PUSHER)
        if n == 0:
            return NOOP
        balls = [c for c, m in (colour_centroid(frame, col) for col in PALETTE) if m > 0]
        if not balls:
            return NOOP
        ball = min(balls, key=lambda b: float(np.sum((b - pusher) ** 2)))
        scale = frame.shape[0] / 64  # rules below are in pixels of a 64-pixel frame
        if pusher[1] >= ball[1]:
            return LEFT
        if abs(pusher[0] - ball[0]) > self.level_px * scale:
            return UP if pusher[0] > ball[0] else DOWN  # rows count down: a smaller row is higher
        return RIGHT

    def reset(self, mask: np.ndarray, seeds: list[int | None] | None = None) -> None:
        pass
