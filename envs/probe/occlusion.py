"""How much of each ball is visible, computed from geometry (never from pixels).

A ball's visibility is the fraction of its disc's area not covered by any occluder rectangle,
estimated on `N_SAMPLES` points spread evenly over the disc (a sunflower pattern), with
`N_RIM` more points on its rim deciding the two ends exactly enough for pixels: it is 0.0 only
when every sample and rim point is covered (no pixel of the ball can show), 1.0 only when none
is, and otherwise at least ``1 / N_SAMPLES`` and at most ``1 - 1 / N_SAMPLES``. In between it is
accurate to about ``1 / N_SAMPLES``. Balls hiding each other and the pusher are not counted:
occluders are the only thing drawn over balls.
"""

from __future__ import annotations

import numpy as np

N_SAMPLES = 96
N_RIM = 64


def _sunflower(n: int) -> np.ndarray:
    """(n, 2) points evenly covering the unit disc, each standing for an equal area."""
    k = np.arange(n) + 0.5
    rho = np.sqrt(k / n)
    theta = np.pi * (3.0 - np.sqrt(5.0)) * k
    return np.stack([rho * np.cos(theta), rho * np.sin(theta)], axis=1)


_ANGLES = 2 * np.pi * np.arange(N_RIM) / N_RIM
_UNIT_DISC = np.concatenate([_sunflower(N_SAMPLES), np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], 1)])  # (S + R, 2)


def visible_fraction(pos: np.ndarray, radius: np.ndarray, occluders: np.ndarray) -> np.ndarray:
    """Fraction of each disc not hidden behind the occluders.

    Args:
        pos: (n, 2) disc centres; radius: (n,) disc radii (world units).
        occluders: (m, 4) rectangles ``(x0, y0, x1, y1)``; m may be 0.
    Returns:
        (n,) float32 in [0, 1].
    """
    n = pos.shape[0]
    out = np.ones(n, np.float32)
    if occluders.shape[0] == 0 or n == 0:
        return out
    # Bounding boxes settle most balls without sampling: clear of every occluder, or inside one.
    x, y, r = pos[:, 0, None], pos[:, 1, None], radius[:, None]  # (n, 1)
    x0, y0, x1, y1 = occluders.T  # (m,) each
    touches = ((x + r >= x0) & (x - r <= x1) & (y + r >= y0) & (y - r <= y1)).any(axis=1)  # (n,)
    inside = ((x - r >= x0) & (x + r <= x1) & (y - r >= y0) & (y + r <= y1)).any(axis=1)  # (n,)
    out[inside] = 0.0
    todo = touches & ~inside
    if todo.any():
        out[todo] = _sampled(pos[todo], radius[todo], occluders)
    return out


def _sampled(pos: np.ndarray, radius: np.ndarray, occluders: np.ndarray) -> np.ndarray:
    """`visible_fraction` from the sample points, for discs that straddle an occluder edge."""
    pts = pos[:, None, :] + radius[:, None, None] * _UNIT_DISC[None]  # (n, S, 2)
    x, y = pts[..., 0, None], pts[..., 1, None]  # (n, S, 1)
    x0, y0, x1, y1 = (occluders[None, None, :, i] for i in range(4))  # (1, 1, m)
    hidden = ((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).any(axis=-1)  # (n, S + R)
    visible = 1.0 - hidden[:, :N_SAMPLES].mean(axis=1)
    lo, hi = 1.0 / N_SAMPLES, 1.0 - 1.0 / N_SAMPLES
    visible = np.where(hidden.all(axis=1), 0.0, np.clip(visible, lo, 1.0))  # any point shows: not 0
    visible = np.where(~hidden.any(axis=1), 1.0, np.minimum(visible, hi))  # any point hidden: not 1
    return visible.astype(np.float32)
