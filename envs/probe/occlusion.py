"""How much of each ball is visible, computed from geometry (never from pixels).

A ball's visibility is the fraction of its disc's area not covered by any occluder rectangle,
estimated on a fixed set of `N_SAMPLES` points spread evenly over the unit disc (a sunflower
pattern). It is exactly 0.0 when the disc lies inside the occluders and exactly 1.0 when it
touches none; in between it is accurate to about ``1 / N_SAMPLES`` (a disc that only grazes an
occluder may still read 1.0). Balls hiding each other
and the pusher are not counted: occluders are the only thing drawn over balls.
"""

from __future__ import annotations

import numpy as np

N_SAMPLES = 96


def _sunflower(n: int) -> np.ndarray:
    """(n, 2) points evenly covering the unit disc, each standing for an equal area."""
    k = np.arange(n) + 0.5
    rho = np.sqrt(k / n)
    theta = np.pi * (3.0 - np.sqrt(5.0)) * k
    return np.stack([rho * np.cos(theta), rho * np.sin(theta)], axis=1)


_UNIT_DISC = _sunflower(N_SAMPLES)  # (S, 2)


def visible_fraction(pos: np.ndarray, radius: np.ndarray, occluders: np.ndarray) -> np.ndarray:
    """Fraction of each disc not hidden behind the occluders.

    Args:
        pos: (n, 2) disc centres; radius: (n,) disc radii (world units).
        occluders: (m, 4) rectangles ``(x0, y0, x1, y1)``; m may be 0.
    Returns:
        (n,) float32 in [0, 1].
    """
    n = pos.shape[0]
    if occluders.shape[0] == 0 or n == 0:
        return np.ones(n, np.float32)
    pts = pos[:, None, :] + radius[:, None, None] * _UNIT_DISC[None]  # (n, S, 2)
    x, y = pts[..., 0, None], pts[..., 1, None]  # (n, S, 1)
    x0, y0, x1, y1 = (occluders[None, None, :, i] for i in range(4))  # (1, 1, m)
    hidden = ((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).any(axis=-1)  # (n, S)
    return (1.0 - hidden.mean(axis=1)).astype(np.float32)
