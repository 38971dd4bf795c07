"""Rasterising the probe world to RGB uint8 frames of any size.

The whole box ``[0, width] x [0, height]`` is stretched onto the ``(H, W)`` image: pixel
``(row, col)`` samples the world point at its centre,
``x = (col + 0.5) / W * width`` and ``y = height - (row + 0.5) / H * height`` (row 0 is the
top). A pixel belongs to a disc or rectangle when its centre does (no anti-aliasing), so with
a non-square image balls become ellipses. Draw order: background, pusher, balls (in index
order), occluders on top.
"""

from __future__ import annotations

import numpy as np

from worldsim.envs.frame_size import parse_size

# Distinct, saturated ball colours: evaluation finds each ball in a frame by its colour.
PALETTE = np.array(
    [
        [230, 25, 25],  # red
        [25, 200, 25],  # green
        [40, 80, 255],  # blue
        [245, 220, 20],  # yellow
        [220, 30, 220],  # magenta
        [20, 220, 230],  # cyan
    ],
    dtype=np.uint8,
)
BACKGROUND = np.array([24, 24, 32], np.uint8)  # near-black, slightly blue
OCCLUDER = np.array([128, 128, 128], np.uint8)  # neutral grey: no hue to confuse with a ball
PUSHER = np.array([245, 245, 245], np.uint8)  # white


def world_to_pixel(pos: np.ndarray, size: tuple[int, int], width: float, height: float) -> np.ndarray:
    """Continuous pixel coordinates ``(row, col)`` of world points.

    Args:
        pos: (..., 2) world ``(x, y)``.
        size: image ``(H, W)``.
    Returns:
        (..., 2) float64 ``(row, col)``; ``floor`` of it is the pixel containing the point.
    """
    h, w = size
    pos = np.asarray(pos, np.float64)
    row = (height - pos[..., 1]) / height * h
    col = pos[..., 0] / width * w
    return np.stack([row, col], axis=-1)


class Renderer:
    """Draws balls, pusher and occluders onto an ``(H, W, 3)`` uint8 canvas."""

    def __init__(self, size: int | tuple[int, int], width: float, height: float):
        self.size = parse_size(size)
        self.width, self.height = width, height
        h, w = self.size
        self._px_w = width / w  # world metres per pixel, horizontally
        self._px_h = height / h
        self._xs = (np.arange(w) + 0.5) * self._px_w  # (W,) pixel-centre x
        self._ys = height - (np.arange(h) + 0.5) * self._px_h  # (H,) pixel-centre y
        self._blank = np.broadcast_to(BACKGROUND, (h, w, 3)).copy()

    def render(
        self,
        pos: np.ndarray,
        radius: np.ndarray,
        color: np.ndarray,
        pusher_pos: np.ndarray,
        pusher_radius: float,
        occluders: np.ndarray,
    ) -> np.ndarray:
        """One frame.

        Args:
            pos: (n, 2) ball centres; radius: (n,); color: (n, 3) uint8.
            pusher_pos: (2,); pusher_radius: metres.
            occluders: (m, 4) rectangles ``(x0, y0, x1, y1)``.
        Returns:
            (H, W, 3) uint8.
        """
        img = self._blank.copy()
        self._disc(img, pusher_pos, pusher_radius, PUSHER)
        for p, r, c in zip(pos, radius, color):
            self._disc(img, p, r, c)
        for x0, y0, x1, y1 in occluders:
            c0, c1 = self._cols(x0, x1)
            r0, r1 = self._rows(y0, y1)
            img[r0:r1, c0:c1] = OCCLUDER
        return img

    def _cols(self, x0: float, x1: float) -> tuple[int, int]:
        """Columns whose pixel centre lies in ``[x0, x1]``, as a half-open range."""
        w = self.size[1]
        c0 = int(np.ceil(x0 / self._px_w - 0.5))
        c1 = int(np.floor(x1 / self._px_w - 0.5)) + 1
        return max(c0, 0), min(c1, w)

    def _rows(self, y0: float, y1: float) -> tuple[int, int]:
        """Rows whose pixel centre has y in ``[y0, y1]`` (rows count down from the top)."""
        h = self.size[0]
        r0 = int(np.ceil((self.height - y1) / self._px_h - 0.5))
        r1 = int(np.floor((self.height - y0) / self._px_h - 0.5)) + 1
        return max(r0, 0), min(r1, h)

    def _disc(self, img: np.ndarray, p: np.ndarray, r: float, color: np.ndarray) -> None:
        c0, c1 = self._cols(p[0] - r, p[0] + r)
        r0, r1 = self._rows(p[1] - r, p[1] + r)
        if c0 >= c1 or r0 >= r1:
            return
        dx = self._xs[c0:c1] - p[0]  # (w',)
        dy = self._ys[r0:r1] - p[1]  # (h',)
        inside = dy[:, None] ** 2 + dx[None, :] ** 2 <= r * r  # (h', w')
        img[r0:r1, c0:c1][inside] = color
