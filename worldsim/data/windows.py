"""Windows of consecutive frames that never cross an episode boundary.

A window of `window` frames taken every `frame_skip` rows starting at row ``s`` covers rows
``s, s + frame_skip, ..., s + (window - 1) * frame_skip``, a span of
``(window - 1) * frame_skip + 1`` rows. It is valid when the whole span lies inside one episode.
All valid start rows are computed once from ``episode_ends`` (diffusion_policy's convention:
exclusive end row of each episode), vectorised, so a dataset of millions of frames costs one
array of starts.
"""

from __future__ import annotations

import numpy as np


def window_span(window: int, frame_skip: int = 1) -> int:
    """Rows from the first to the last frame of a window, inclusive."""
    return (window - 1) * frame_skip + 1


def window_starts(episode_ends: np.ndarray, window: int, frame_skip: int = 1, stride: int = 1) -> np.ndarray:
    """Start rows of every window that lies inside one episode.

    Args:
        episode_ends: int (E,), non-decreasing exclusive end rows; episode i is rows
            ``[episode_ends[i - 1], episode_ends[i])`` (episode 0 starts at row 0).
        window: frames per window, >= 1.
        frame_skip: rows between consecutive frames of a window, >= 1.
        stride: rows between consecutive starts within an episode (counted from the episode's
            first row), >= 1.

    Returns:
        int64 (K,), sorted. Episode i contributes ``max(0, (len_i - span) // stride + 1)`` starts.

    Raises:
        ValueError: bad arguments, or no window fits in any episode.
    """
    for name, value in (("window", window), ("frame_skip", frame_skip), ("stride", stride)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    ends = np.asarray(episode_ends, dtype=np.int64)
    if ends.ndim != 1:
        raise ValueError(f"episode_ends must be 1-D, got shape {ends.shape}")
    begins = np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1]])
    lengths = ends - begins
    if np.any(lengths < 0):
        raise ValueError("episode_ends must be non-decreasing")
    span = window_span(window, frame_skip)
    counts = np.where(lengths >= span, (lengths - span) // stride + 1, 0)  # (E,)
    total = int(counts.sum())
    if total == 0:
        longest = int(lengths.max()) if lengths.size else 0
        raise ValueError(
            f"no window of {window} frames every {frame_skip} rows (span {span} rows) fits in any of the "
            f"{len(ends)} episodes (longest: {longest} rows)"
        )
    # Position of each window within its episode: 0, 1, ..., counts[i] - 1 for each episode i.
    first = np.cumsum(counts) - counts  # (E,) index of each episode's first window
    within = np.arange(total, dtype=np.int64) - np.repeat(first, counts)  # (K,)
    return np.repeat(begins, counts) + within * stride


def sample_window_starts(
    episode_ends: np.ndarray,
    window: int,
    k: int,
    generator: np.random.Generator,
    frame_skip: int = 1,
    stride: int = 1,
    replace: bool = True,
) -> np.ndarray:
    """`k` start rows drawn uniformly from `window_starts(...)` with `generator`: int64 (k,)."""
    starts = window_starts(episode_ends, window, frame_skip, stride)
    if not replace and k > len(starts):
        raise ValueError(f"cannot draw {k} distinct windows from {len(starts)}")
    return generator.choice(starts, size=k, replace=replace)
