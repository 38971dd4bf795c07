"""What every real world's frames share: the ``size`` argument (an int for square frames, or ``(H, W)``)
and ``render()`` of the last observation."""

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


class LastFrameRender:
    """``render()`` for a real world that keeps its last observation in ``self._frame``."""

    render_mode: str | None
    _frame: np.ndarray | None

    def render(self) -> np.ndarray | None:
        """The current frame, ``(H, W, 3)`` uint8, when ``render_mode == "rgb_array"``."""
        if self.render_mode is None:
            return None
        if self._frame is None:
            raise RuntimeError("call reset() before render()")
        return self._frame.copy()
