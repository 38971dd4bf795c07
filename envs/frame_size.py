"""The ``size`` argument every real world takes: an int (square) or ``(H, W)``."""

from __future__ import annotations

import numpy as np


def parse_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` from an int (square frames) or a pair; ValueError if not two positive ints."""
    if isinstance(size, (int, np.integer)):
        h, w = size, size
    else:
        try:
            h, w = size
        except (TypeError, ValueError) as e:
            raise ValueError(f"frame size must be an int or (H, W), got {size!r}") from e
    if int(h) != h or int(w) != w or int(h) <= 0 or int(w) <= 0:
        raise ValueError(f"frame size must be positive integers, got {size!r}")
    return int(h), int(w)
