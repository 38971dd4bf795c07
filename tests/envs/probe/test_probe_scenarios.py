"""Probe scenario generator: determinism and the promises of each family."""

import numpy as np
import pytest

from worldsim.envs.probe.physics import PhysicsConfig
from worldsim.envs.probe.render import PALETTE
from worldsim.envs.probe.scenarios import FAMILIES, MAX_BALLS, MAX_OCCLUDERS, make_scenario


def _arrays(s):
    return [s.pos, s.vel, s.radius, s.color, s.occluders, s.pusher_pos, np.array(s.restitution)]


@pytest.mark.parametrize("family", FAMILIES)
def test_same_family_and_seed_same_scenario(family):
    for a, b in zip(_arrays(make_scenario(family, 7)), _arrays(make_scenario(family, 7))):
        np.testing.assert_array_equal(a, b)
    differs = [not np.array_equal(a, b) for a, b in zip(_arrays(make_scenario(family, 7)), _arrays(make_scenario(family, 8)))]
    assert any(differs)


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(ValueError, match="permanence.*fall_bounce.*collision.*push.*random"):
        make_scenario("gravity", 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_scenarios_are_well_formed(family):
    cfg = PhysicsConfig()
    for seed in range(25):
        s = make_scenario(family, seed)
        n = s.n_balls
        assert 1 <= n <= MAX_BALLS and len(s.occluders) <= MAX_OCCLUDERS
        assert len({tuple(c) for c in s.color}) == n
        assert all(any(np.array_equal(c, p) for p in PALETTE) for c in s.color)
        # inside the box and not overlapping each other or the pusher
        assert np.all(s.pos >= s.radius[:, None] - 1e-9)
        assert np.all(s.pos[:, 0] <= cfg.width - s.radius) and np.all(s.pos[:, 1] <= cfg.height - s.radius)
        centres = np.vstack([s.pos, s.pusher_pos])
        radii = np.append(s.radius, cfg.pusher_radius)
        d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        assert np.all(d >= radii[:, None] + radii[None] - 1e-9)


def test_permanence_occluder_is_wide_enough_to_hide_the_ball():
    for seed in range(25):
        s = make_scenario("permanence", seed)
        x0, y0, x1, y1 = s.occluders[0]
        assert x1 - x0 > 2 * s.radius[0] and y1 > 2 * s.radius[0]
        assert s.pos[0, 0] < x0 or s.pos[0, 0] > x1  # starts in view
        assert np.sign(s.vel[0, 0]) == np.sign((x0 + x1) / 2 - s.pos[0, 0])  # heads for it
