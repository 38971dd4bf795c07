"""Long-horizon consistency: move away, come back, and compare what is seen with what was seen.

The agent holds action `away` for n steps, then `back` for n steps (TECO / LoopNav style). In a
world that does not change meanwhile the frame on return equals the frame before leaving; a
simulator that forgot what was out of view draws something else. The real world's own score is
the ceiling (Crafter's creatures move and movement can be blocked, so it is below perfect there).

A score needs a floor too: in a world that is mostly one texture (Crafter's grass) a simulator that forgot
everything and draws the typical view scores nearly as well as one that remembers. The memoryless reference is
the per-pixel mean of the OTHER episodes' real returns (leave one out): the frame that minimises the expected
squared error for a simulator that knows the world's statistics but nothing of this episode. A simulator
remembers only as far as it scores above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worldsim.eval.compare import frame_scores

# Per real world: the actions that leave and come back, and reset options giving a static scene.
LOOPS = {
    "probe": {"away": 3, "back": 4, "options": {"family": "push"}},  # pusher up, then down; the ball rests
    "crafter": {"away": 1, "back": 2, "options": None},  # move_left, then move_right
    "minetest": {"away": 5, "back": 6, "options": None},  # turn_left, then turn_right (15 degrees a frame)
}


@dataclass
class Loop:
    """Actions of one look-away-and-back loop of length n each way."""

    n: int
    away: int
    back: int

    def actions(self) -> list[int]:
        return [self.away] * self.n + [self.back] * self.n


def return_scores(before: np.ndarray, returned: np.ndarray) -> dict[str, list[float]]:
    """PSNR/SSIM of the frame on return against the frame before leaving.

    Args:
        before, returned: uint8 (N, H, W, 3).
    Returns:
        {"psnr": [N], "ssim": [N]}.
    """
    p, s = frame_scores(before[:, None], returned[:, None])
    return {"psnr": p[:, 0].tolist(), "ssim": s[:, 0].tolist()}


def memoryless_frames(real_back: np.ndarray) -> np.ndarray:
    """Per episode, the mean of the other episodes' real returns (uint8 (N, H, W, 3), N >= 2): the memoryless reference."""
    if len(real_back) < 2:
        raise ValueError(f"the memoryless reference needs at least 2 episodes, got {len(real_back)}")
    total = real_back.astype(np.float64).sum(axis=0, keepdims=True)
    return np.rint((total - real_back) / (len(real_back) - 1)).astype(np.uint8)


def loop_scores(before: np.ndarray, real_back: np.ndarray, sim_back: np.ndarray) -> dict[str, dict[str, list[float]]]:
    """The comparisons of a loop, per episode: the real return and the simulated one against the frame before
    leaving, the simulated return against the real one (what the evaluation scores) and, from 2 episodes on, the
    memoryless reference against the real one. uint8 (N, H, W, 3) each."""
    scores = {"real_return_vs_before": return_scores(before, real_back),
              "sim_return_vs_before": return_scores(before, sim_back),
              "sim_return_vs_real_return": return_scores(real_back, sim_back)}
    if len(real_back) >= 2:
        scores["memoryless_vs_real_return"] = return_scores(real_back, memoryless_frames(real_back))
    return scores
