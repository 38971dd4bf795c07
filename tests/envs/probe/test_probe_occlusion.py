"""Geometric visibility of balls behind occluders."""

import numpy as np
import pytest

from worldsim.envs.probe.occlusion import visible_fraction

OCC = np.array([[1.0, 0.0, 2.0, 2.0]])


def test_fully_hidden_fully_visible_and_half():
    pos = np.array([[1.5, 1.0], [3.0, 1.0], [2.0, 1.0], [1.5, 2.0]])
    vis = visible_fraction(pos, np.full(4, 0.3), OCC)
    assert vis[0] == 0.0
    assert vis[1] == 1.0
    assert vis[2] == pytest.approx(0.5, abs=0.03)  # right half sticks out
    assert vis[3] == pytest.approx(0.5, abs=0.03)  # top half sticks out
    assert vis.dtype == np.float32


def test_union_of_two_occluders_hides_a_ball_straddling_them():
    occ = np.array([[1.0, 0.0, 2.0, 2.0], [2.0, 0.0, 3.0, 2.0]])
    assert visible_fraction(np.array([[2.0, 1.0]]), np.array([0.3]), occ)[0] == 0.0


def test_no_occluders_means_visible():
    np.testing.assert_array_equal(visible_fraction(np.zeros((3, 2)), np.ones(3), np.zeros((0, 4))), 1.0)


def test_visibility_is_monotone_as_a_ball_slides_in():
    xs = np.linspace(0.3, 1.5, 40)
    vis = visible_fraction(np.stack([xs, np.ones_like(xs)], 1), np.full(40, 0.3), OCC)
    assert np.all(np.diff(vis) <= 1e-6) and vis[0] == 1.0 and vis[-1] == 0.0
