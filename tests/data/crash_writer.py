"""Writer for the crash-recovery test: appends deterministic episodes to a store until it is killed.

Run as ``python crash_writer.py STORE SEED``. Every byte of episode ``i`` follows from (SEED, i, row),
so the test can check each committed episode exactly (`expected_episode`).
"""

from __future__ import annotations

import sys

import numpy as np
from gymnasium import spaces

FRAME_SIZE = (24, 32)
ACTION_SPACE = spaces.Discrete(7)
STATE_SPEC = {"pos": ((2,), np.float32)}
CHUNK_FRAMES = 8  # small chunks: an episode touches several obs files, so kills land between them


def episode_length(seed: int, i: int) -> int:
    """Steps T of episode i (the episode has T + 1 frames)."""
    return int(np.random.default_rng([seed, i]).integers(0, 60))


def expected_episode(seed: int, i: int) -> dict[str, np.ndarray]:
    """Arguments of `append_episode` for episode i: obs (T+1, H, W, 3), action (T, 1), ... state."""
    steps = episode_length(seed, i)
    rows = np.arange(steps + 1)
    h, w = FRAME_SIZE
    pixel = np.arange(h * w * 3).reshape(h, w, 3)
    obs = ((i * 7919 + rows[:, None, None, None] * 131 + pixel) % 251).astype(np.uint8)  # (T+1, H, W, 3)
    t = np.arange(steps)
    return {
        "obs": obs,
        "action": ((i + t) % 7).reshape(-1, 1).astype(np.int64),  # (T, 1) packed
        "reward": (i + 0.5 * t).astype(np.float32),
        "terminated": (t == steps - 1) & (i % 2 == 0),
        "truncated": (t == steps - 1) & (i % 3 == 0),
        "state": {"pos": np.stack([np.full(steps + 1, i), rows], axis=1).astype(np.float32)},
    }


def main(path: str, seed: int) -> None:
    from worldsim.data.store import EpisodeStore

    store = EpisodeStore.open(path, "a")
    print("ready", store.num_episodes, flush=True)
    while True:
        store.append_episode(**expected_episode(seed, store.num_episodes))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
