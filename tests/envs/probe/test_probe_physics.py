"""Physics of the probe world against closed-form answers."""

import numpy as np
import pytest

from worldsim.envs.probe.physics import PhysicsConfig, WorldState, kinetic_energy, momentum, step


def _world(pos, vel, radius, restitution=0.8, pusher=(0.3, 3.7)):
    radius = np.asarray(radius, np.float64)
    return WorldState(
        pos=np.asarray(pos, np.float64).reshape(-1, 2),
        vel=np.asarray(vel, np.float64).reshape(-1, 2),
        radius=radius,
        mass=np.pi * radius**2,
        restitution=restitution,
        pusher_pos=np.asarray(pusher, np.float64),
    )


NOOP = np.zeros(2)


def test_free_fall_follows_the_parabola_until_the_floor():
    cfg = PhysicsConfig()
    x0, y0, vx, vy, r = 1.5, 3.0, 0.4, 1.0, 0.3
    w = _world([x0, y0], [vx, vy], [r])
    # First floor contact: y0 + vy t - g t^2 / 2 = r.
    g = cfg.gravity
    t_floor = (vy + np.sqrt(vy**2 + 2 * g * (y0 - r))) / g
    k = 0
    while (k + 1) * cfg.dt < t_floor:
        step(w, NOOP, cfg)
        k += 1
        t = k * cfg.dt
        np.testing.assert_allclose(w.pos[0], [x0 + vx * t, y0 + vy * t - 0.5 * g * t * t], atol=1e-9)
        np.testing.assert_allclose(w.vel[0], [vx, vy - g * t], atol=1e-9)
    assert k >= 8  # the check above covered a real stretch of flight
    # ...and then it bounces: moving up, never again as high as it started.
    peak = -np.inf
    for _ in range(40):
        step(w, NOOP, cfg)
        peak = max(peak, w.pos[0, 1])
    assert r <= peak < y0


def test_bounce_speed_scales_with_restitution():
    cfg = PhysicsConfig(substeps=64)  # fine steps: the bounce happens close to the true contact
    speeds = []
    for e in (0.5, 0.9):
        w = _world([2.0, 2.0], [0.0, 0.0], [0.25], restitution=e)
        prev = w.vel[0, 1]
        while True:
            step(w, NOOP, cfg)
            if w.vel[0, 1] > 0:
                break
            prev = w.vel[0, 1]
        impact = np.sqrt(2 * cfg.gravity * (2.0 - 0.25))
        assert abs(prev) <= impact + 1e-6
        speeds.append(w.vel[0, 1])
    # the upward speed right after the step that contains the bounce is about e * impact - g * dt
    ratio = (speeds[0] + cfg.gravity * cfg.dt) / (speeds[1] + cfg.gravity * cfg.dt)
    assert ratio == pytest.approx(0.5 / 0.9, rel=0.1)


@pytest.mark.parametrize("seed", range(6))
def test_elastic_collision_conserves_momentum_and_energy(seed):
    rng = np.random.default_rng(seed)
    cfg = PhysicsConfig(gravity=0.0)
    r = rng.uniform(0.2, 0.4, size=2)
    offset = rng.uniform(-0.3, 0.3)  # oblique hits too
    w = _world([[1.0, 2.0], [3.0, 2.0 + offset]], [[rng.uniform(1, 3), 0.0], [-rng.uniform(0, 2), 0.0]], r)
    p0, e0 = momentum(w), kinetic_energy(w)
    v0 = w.vel.copy()
    for _ in range(30):  # until they meet, well before either could reach a wall
        step(w, NOOP, cfg)
        if not np.allclose(w.vel, v0):
            break
    else:
        pytest.fail("the balls never collided")
    step(w, NOOP, cfg)
    np.testing.assert_allclose(momentum(w), p0, atol=1e-9)
    assert kinetic_energy(w) == pytest.approx(e0, rel=1e-9)


def test_equal_masses_exchange_velocities_head_on():
    w = _world([[1.0, 2.0], [3.0, 2.0]], [[2.0, 0.0], [0.0, 0.0]], [0.3, 0.3])
    for _ in range(15):
        step(w, NOOP, PhysicsConfig(gravity=0.0))
    np.testing.assert_allclose(w.vel, [[0.0, 0.0], [2.0, 0.0]], atol=1e-9)


def test_resting_ball_stays_put():
    w = _world([2.0, 0.3], [0.0, 0.0], [0.3])
    for _ in range(100):
        step(w, NOOP, PhysicsConfig())
    np.testing.assert_allclose(w.pos[0], [2.0, 0.3], atol=1e-12)
    np.testing.assert_allclose(w.vel[0], [0.0, 0.0], atol=1e-12)


def test_pusher_carries_a_ball_and_noop_does_not():
    cfg = PhysicsConfig()
    w = _world([2.0, 0.3], [0.0, 0.0], [0.3], pusher=(1.2, 0.3))
    for _ in range(5):
        step(w, NOOP, cfg)
    assert w.pos[0, 0] == 2.0
    for _ in range(10):
        step(w, np.array([cfg.pusher_speed, 0.0]), cfg)
    assert w.pos[0, 0] > 2.3
    assert w.vel[0, 0] == pytest.approx(cfg.pusher_speed, rel=1e-3)
    assert w.pusher_pos[0] > 1.2
    # the ball does not sink into the pusher (the floor clamp may leave micrometres)
    assert np.hypot(*(w.pos[0] - w.pusher_pos)) >= 0.3 + cfg.pusher_radius - 1e-4


def test_pusher_stays_in_the_box():
    cfg = PhysicsConfig()
    w = _world([2.0, 2.0], [0.0, 0.0], [0.3])
    for _ in range(100):
        step(w, np.array([-cfg.pusher_speed, cfg.pusher_speed]), cfg)
    np.testing.assert_allclose(w.pusher_pos, [cfg.pusher_radius, cfg.height - cfg.pusher_radius])


def test_balls_stay_in_the_box():
    rng = np.random.default_rng(0)
    cfg = PhysicsConfig()
    n = 6
    r = np.full(n, 0.25)
    pos = np.stack([np.linspace(0.4, 3.6, n), rng.uniform(0.5, 3.5, n)], axis=1)
    w = _world(pos, rng.uniform(-6, 6, (n, 2)), r)
    for _ in range(200):
        step(w, NOOP, cfg)
        assert np.all(w.pos >= r[:, None] - 1e-9)
        assert np.all(w.pos[:, 0] <= cfg.width - r + 1e-9)
        assert np.all(w.pos[:, 1] <= cfg.height - r + 1e-9)
