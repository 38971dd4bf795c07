"""Window starts: never across an episode boundary, and exactly as many as fit."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.data.windows import sample_window_starts, window_span, window_starts


def brute_force_starts(lengths: list[int], window: int, frame_skip: int, stride: int) -> list[int]:
    out, begin = [], 0
    for n in lengths:
        for s in range(begin, begin + n, stride):
            rows = [s + j * frame_skip for j in range(window)]
            if rows[-1] < begin + n:
                out.append(s)
        begin += n
    return out


def test_small_example() -> None:
    ends = np.array([5, 7, 12])  # episodes [0, 5), [5, 7), [7, 12)
    np.testing.assert_array_equal(window_starts(ends, 3), [0, 1, 2, 7, 8, 9])
    np.testing.assert_array_equal(window_starts(ends, 2, frame_skip=2), [0, 1, 2, 7, 8, 9])
    np.testing.assert_array_equal(window_starts(ends, 2, stride=2), [0, 2, 5, 7, 9])
    np.testing.assert_array_equal(window_starts(ends, 1), np.arange(12))


@pytest.mark.parametrize("frame_skip", [1, 2, 3])
@pytest.mark.parametrize("stride", [1, 4])
def test_random_episodes_no_window_crosses_and_count_is_analytic(frame_skip: int, stride: int) -> None:
    rng = np.random.default_rng(frame_skip * 10 + stride)
    for _ in range(30):
        lengths = rng.integers(0, 40, size=rng.integers(1, 12)).tolist()
        ends = np.cumsum(lengths)
        window = int(rng.integers(1, 9))
        span = window_span(window, frame_skip)
        if max(lengths) < span:
            with pytest.raises(ValueError, match="no window"):
                window_starts(ends, window, frame_skip, stride)
            continue
        starts = window_starts(ends, window, frame_skip, stride)
        assert starts.dtype == np.int64
        # Every window's first and last row are in the same episode.
        first_ep = np.searchsorted(ends, starts, side="right")
        last_ep = np.searchsorted(ends, starts + span - 1, side="right")
        np.testing.assert_array_equal(first_ep, last_ep)
        analytic = sum(max(0, (n - span) // stride + 1) for n in lengths)
        assert len(starts) == analytic
        np.testing.assert_array_equal(starts, brute_force_starts(lengths, window, frame_skip, stride))


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"span 7 rows\) fits in any of the 2 episodes \(longest: 5 rows\)"):
        window_starts(np.array([3, 8]), 4, frame_skip=2)
    with pytest.raises(ValueError, match="no window"):
        window_starts(np.array([], dtype=np.int64), 1)
    with pytest.raises(ValueError, match="window must be a positive integer"):
        window_starts(np.array([8]), 0)
    with pytest.raises(ValueError, match="frame_skip"):
        window_starts(np.array([8]), 2, frame_skip=0)
    with pytest.raises(ValueError, match="non-decreasing"):
        window_starts(np.array([8, 3]), 2)


def test_sampling_is_seeded_and_inside_the_valid_set() -> None:
    ends = np.array([10, 13, 40])
    valid = set(window_starts(ends, 4, 2).tolist())
    a = sample_window_starts(ends, 4, 50, np.random.default_rng(7), frame_skip=2)
    b = sample_window_starts(ends, 4, 50, np.random.default_rng(7), frame_skip=2)
    np.testing.assert_array_equal(a, b)
    assert set(a.tolist()) <= valid and len(a) == 50
    distinct = sample_window_starts(ends, 4, len(valid), np.random.default_rng(0), frame_skip=2, replace=False)
    assert set(distinct.tolist()) == valid
    with pytest.raises(ValueError, match="distinct"):
        sample_window_starts(ends, 4, len(valid) + 1, np.random.default_rng(0), frame_skip=2, replace=False)
