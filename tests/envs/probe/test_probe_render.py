"""Rasterising the probe world."""

import numpy as np
import pytest

from worldsim.envs.frame_size import parse_size
from worldsim.envs.probe.render import BACKGROUND, OCCLUDER, PALETTE, PUSHER, Renderer, world_to_pixel

NO_OCC = np.zeros((0, 4))


@pytest.mark.parametrize("size", [64, (48, 80), (17, 9), (128, 128)])
def test_any_size_gives_that_shape(size):
    img = Renderer(size, 4.0, 4.0).render(
        np.array([[2.0, 2.0]]), np.array([0.3]), PALETTE[:1], np.array([1.0, 1.0]), 0.25, NO_OCC
    )
    assert img.shape == (*parse_size(size), 3) and img.dtype == np.uint8


def test_palette_is_distinct_and_saturated():
    assert len({tuple(c) for c in PALETTE}) == len(PALETTE)
    chroma = PALETTE.max(axis=1).astype(int) - PALETTE.min(axis=1)
    assert np.all(chroma >= 150)
    for special in (BACKGROUND, OCCLUDER, PUSHER):
        assert np.abs(PALETTE.astype(int) - special).sum(axis=1).min() > 100


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_ball_is_drawn_in_its_colour_where_it_is(size):
    r = Renderer(size, 4.0, 4.0)
    pos = np.array([[0.8, 3.1], [2.9, 0.6]])
    img = r.render(pos, np.array([0.3, 0.4]), PALETTE[[2, 4]], np.array([2.0, 2.0]), 0.25, NO_OCC)
    for p, c in zip(pos, PALETTE[[2, 4]]):
        row, col = np.floor(world_to_pixel(p, size, 4.0, 4.0)).astype(int)
        assert tuple(img[row, col]) == tuple(c)
    row, col = np.floor(world_to_pixel(np.array([2.0, 2.0]), size, 4.0, 4.0)).astype(int)
    assert tuple(img[row, col]) == tuple(PUSHER)
    assert tuple(img[0, 0]) == tuple(BACKGROUND)
    # disc area matches pi r^2 in pixels (no anti-aliasing, so only roughly)
    area_px = np.all(img == PALETTE[4], axis=-1).sum()
    expected = np.pi * 0.4**2 * (size[0] / 4.0) * (size[1] / 4.0)
    assert area_px == pytest.approx(expected, rel=0.15)


def test_occluder_is_drawn_over_balls():
    r = Renderer(64, 4.0, 4.0)
    img = r.render(
        np.array([[2.0, 1.0]]), np.array([0.3]), PALETTE[:1], np.array([0.3, 3.7]), 0.25,
        np.array([[1.5, 0.0, 2.5, 2.0]]),
    )
    assert not np.any(np.all(img == PALETTE[0], axis=-1))
    rows, cols = np.nonzero(np.all(img == OCCLUDER, axis=-1))
    # the rectangle covers x in [1.5, 2.5] -> cols 24..39, y in [0, 2] -> rows 32..63
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (24, 39, 32, 63)


def test_world_to_pixel_corners():
    size = (48, 80)
    np.testing.assert_allclose(world_to_pixel(np.array([0.0, 4.0]), size, 4.0, 4.0), [0, 0])
    np.testing.assert_allclose(world_to_pixel(np.array([4.0, 0.0]), size, 4.0, 4.0), [48, 80])
    np.testing.assert_allclose(world_to_pixel(np.array([[1.0, 3.0]]), size, 4.0, 4.0), [[12, 20]])
