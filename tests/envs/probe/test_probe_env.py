"""ProbeWorldEnv: the adapter contract, and the probes each family promises."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from worldsim.envs import REAL_ENVS
from worldsim.envs.probe import FAMILIES, ProbeWorldEnv
from worldsim.envs.probe.render import world_to_pixel

NOOP, LEFT, RIGHT, UP, DOWN = range(5)


def _rollout(env, seed, actions, options=None):
    obs, info = env.reset(seed=seed, options=options)
    frames, states = [obs], [info["state"]]
    for a in actions:
        obs, _, _, _, info = env.step(a)
        frames.append(obs)
        states.append(info["state"])
    return np.stack(frames), {k: np.stack([s[k] for s in states]) for k in states[0]}


@pytest.mark.parametrize("family", FAMILIES)
def test_check_env_passes_without_warnings(family):
    env = gym.make(REAL_ENVS["probe"], family=family, render_mode="rgb_array").unwrapped  # has a spec
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker reports soft problems as warnings
        check_env(env, skip_render_check=False)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_episode_other_seed_differs(family):
    actions = np.random.default_rng(0).integers(0, 5, size=30)
    env = ProbeWorldEnv(family=family)
    f1, s1 = _rollout(env, 3, actions)
    f2, s2 = _rollout(ProbeWorldEnv(family=family), 3, actions)
    np.testing.assert_array_equal(f1, f2)
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k])
    f3, _ = _rollout(env, 4, actions)
    assert not np.array_equal(f1, f3)


def test_unseeded_reset_continues_a_deterministic_sequence():
    a, b = ProbeWorldEnv(), ProbeWorldEnv()
    a.reset(seed=11)
    b.reset(seed=11)
    oa, ia = a.reset()
    ob, ib = b.reset()
    np.testing.assert_array_equal(oa, ob)
    assert ia["scenario_seed"] == ib["scenario_seed"]
    assert ia["scenario_seed"] != a.reset(seed=11)[1]["scenario_seed"]


def test_options_pick_an_exact_scenario():
    env = ProbeWorldEnv()  # family "random" by default
    o1, i1 = env.reset(seed=1, options={"family": "permanence", "scenario_seed": 7})
    o2, i2 = env.reset(seed=2, options={"family": "permanence", "scenario_seed": 7})
    np.testing.assert_array_equal(o1, o2)
    assert (i1["family"], i1["scenario_seed"]) == ("permanence", 7)
    assert env.reset(seed=1)[1]["family"] == "random"
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"famly": "push"})
    with pytest.raises(ValueError, match="known families"):
        env.reset(options={"family": "gravity"})
    with pytest.raises(ValueError, match="known families"):
        ProbeWorldEnv(family="gravity")


def test_a_list_of_families_draws_one_per_reset_deterministically():
    mixed = ["random", "permanence", "permanence", "fall_bounce"]
    a, b = ProbeWorldEnv(family=mixed), ProbeWorldEnv(family=tuple(mixed))
    seen = [a.reset(seed=s)[1]["family"] for s in range(60)]
    assert seen == [b.reset(seed=s)[1]["family"] for s in range(60)]
    counts = {f: seen.count(f) for f in set(seen)}
    assert set(counts) == {"random", "permanence", "fall_bounce"}  # each drawn, nothing else
    assert counts["permanence"] > max(counts["random"], counts["fall_bounce"])  # repeated names weigh more
    # the drawn family's scenario is the one asked for by name with the same scenario seed
    obs, info = a.reset(seed=3)
    exact, _ = ProbeWorldEnv().reset(options={"family": info["family"], "scenario_seed": info["scenario_seed"]})
    np.testing.assert_array_equal(obs, exact)
    assert a.reset(seed=3, options={"family": "push"})[1]["family"] == "push"  # an option still decides
    # one family named alone draws as before (the same scenario seeds as the default env)
    assert ProbeWorldEnv(family=["random"]).reset(seed=5)[1]["scenario_seed"] == ProbeWorldEnv().reset(seed=5)[1]["scenario_seed"]
    with pytest.raises(ValueError, match="known families"):
        ProbeWorldEnv(family=["random", "gravity"])
    with pytest.raises(ValueError, match="at least one"):
        ProbeWorldEnv(family=[])


@pytest.mark.parametrize("size", [(48, 80), 32, (96, 40)])
def test_other_sizes(size):
    env = ProbeWorldEnv(size=size)
    obs, _ = env.reset(seed=0)
    hw = (size, size) if isinstance(size, int) else size
    assert obs.shape == (*hw, 3) and env.observation_space.shape == (*hw, 3)
    assert env.step(NOOP)[0].shape == (*hw, 3)


def test_truncates_at_max_episode_steps_and_never_terminates():
    env = ProbeWorldEnv(max_episode_steps=10)
    env.reset(seed=0)
    flags = [env.step(NOOP)[2:4] for _ in range(10)]
    assert flags[:-1] == [(False, False)] * 9 and flags[-1] == (False, True)


def test_state_shapes_are_fixed_across_steps_episodes_and_families():
    spec = ProbeWorldEnv.state_spec()
    env = ProbeWorldEnv()
    for family in FAMILIES:
        for seed in range(3):
            _, info = env.reset(seed=seed, options={"family": family})
            for t in range(3):
                state = info["state"]
                assert set(state) == set(spec)
                for k, (shape, dtype) in spec.items():
                    assert state[k].shape == shape and state[k].dtype == dtype, k
                info = env.step(t % 5)[4]


def test_invalid_action_and_step_before_reset():
    env = ProbeWorldEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(5)


@pytest.mark.parametrize("seed", range(5))
def test_fall_bounce_follows_the_parabola_before_the_floor(seed):
    env = ProbeWorldEnv(family="fall_bounce")
    _, st = _rollout(env, None, [NOOP] * 30, options={"scenario_seed": seed})
    cfg, g = env.physics, env.physics.gravity
    n = int(st["present"][0].sum())
    for i in range(n):
        (x0, y0), (vx, vy), r = st["position"][0, i], st["velocity"][0, i], st["radius"][0, i]
        t_floor = (vy + np.sqrt(vy**2 + 2 * g * (y0 - r))) / g
        k = np.arange(31)
        before = k * cfg.dt < t_floor
        t = k[before] * cfg.dt
        expected = np.stack([x0 + vx * t, y0 + vy * t - 0.5 * g * t**2], axis=1)
        np.testing.assert_allclose(st["position"][before, i], expected, atol=1e-4)
        assert before.sum() >= 5 and not before.all()  # checked a real stretch, and it does land
        assert st["velocity"][-1, i, 1] != pytest.approx(vy - g * 30 * cfg.dt)  # it bounced


@pytest.mark.parametrize("seed", range(5))
def test_collision_conserves_horizontal_momentum(seed):
    env = ProbeWorldEnv(family="collision")
    _, st = _rollout(env, None, [NOOP] * 40, options={"scenario_seed": seed})
    m = np.pi * st["radius"][0, :2].astype(np.float64) ** 2
    vx = st["velocity"][:, :2, 0].astype(np.float64)  # (T, 2)
    x, r = st["position"][:, :2, 0], st["radius"][0, :2]
    # frames from which a ball could reach a wall within the next step
    reach = np.abs(vx) * env.physics.dt + 1e-3
    near_wall = (x - r <= reach) | (env.physics.width - r - x <= reach)
    first_wall = int(np.argmax(near_wall.any(axis=1))) if near_wall.any() else len(x) - 1
    changed = np.nonzero(np.any(np.abs(vx - vx[0]) > 1e-3, axis=1))[0]
    assert len(changed) and changed[0] <= first_wall, "the balls must collide before touching a wall"
    p = vx[: first_wall + 1] @ m
    np.testing.assert_allclose(p, p[0], rtol=1e-5, atol=1e-6)
    assert vx[changed[0], 0] < vx[0, 0] and vx[changed[0], 1] > vx[0, 1]  # left ball slowed, right sped up


@pytest.mark.parametrize("seed", range(5))
def test_permanence_ball_disappears_behind_the_occluder_and_comes_back(seed):
    env = ProbeWorldEnv(family="permanence")
    frames, st = _rollout(env, None, [NOOP] * 63, options={"scenario_seed": seed})
    vis = st["visible"][:, 0]
    colour = st["color"][0, 0]
    assert vis[0] == 1.0
    hidden = np.nonzero(vis == 0.0)[0]
    assert len(hidden) >= 3, "the ball should stay fully hidden for a few frames"
    back = np.nonzero(vis[hidden[0]:] == 1.0)[0]
    assert len(back), "the ball must reappear"
    # and the pixels agree: no ball colour while hidden, its colour once it is back
    has_colour = np.all(frames == colour, axis=-1).any(axis=(1, 2))
    assert not has_colour[hidden].any()
    assert has_colour[hidden[0] + back[0]]
    # it kept moving while hidden: reappears on the other side of the occluder
    x0, _, x1, _ = st["occluders"][0, 0]
    start, again = st["position"][0, 0, 0], st["position"][hidden[0] + back[0], 0, 0]
    assert (start < x0 and again > x1) or (start > x1 and again < x0)


@pytest.mark.parametrize("seed", range(5))
def test_push_moves_the_ball_only_when_pushed(seed):
    env = ProbeWorldEnv(family="push")
    _, idle = _rollout(env, None, [NOOP] * 20, options={"scenario_seed": seed})
    np.testing.assert_array_equal(idle["position"][:, 0], np.repeat(idle["position"][:1, 0], 21, axis=0))
    _, pushed = _rollout(env, None, [RIGHT] * 10, options={"scenario_seed": seed})
    x = pushed["position"][:, 0, 0]
    assert x[-1] > x[0] + 0.3 and np.all(np.diff(x) >= -1e-6)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_ground_truth_colour_matches_the_pixels(family, size):
    env = ProbeWorldEnv(family=family, size=size)
    checked = 0
    for seed in range(4):
        actions = np.random.default_rng(seed).integers(0, 5, size=40)
        frames, st = _rollout(env, seed, actions)
        for t in range(len(frames)):
            for i in np.nonzero(st["present"][t] & (st["visible"][t] == 1.0))[0]:
                row, col = np.floor(world_to_pixel(st["position"][t, i], size, 4.0, 4.0)).astype(int)
                assert tuple(frames[t, row, col]) == tuple(st["color"][t, i]), (seed, t, i)
                checked += 1
            hidden = st["present"][t] & (st["visible"][t] == 0.0)
            for i in np.nonzero(hidden)[0]:
                assert not np.all(frames[t] == st["color"][t, i], axis=-1).any()
    assert checked > 40
