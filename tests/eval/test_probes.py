"""The pixel probes: 100% on the real probe world (the ceiling), and failing on broken frames."""

import numpy as np
import pytest

from worldsim import envs
from worldsim.agents import make_policy
from worldsim.envs.probe.render import BACKGROUND, OCCLUDER, PALETTE, world_to_pixel
from worldsim.eval.episodes import roll_real
from worldsim.eval.probe_suite import ProbeEpisode, ProbeSuiteConfig, admissible_states, real_probe_episodes, score_suite
from worldsim.eval.probes import detect_balls, score_episode, wilson_interval


@pytest.fixture(scope="module")
def suite():
    cfg = ProbeSuiteConfig(seeds=5, steps=40)
    return cfg, real_probe_episodes(cfg)


def test_real_probe_world_scores_100_percent_on_every_family(suite):
    cfg, episodes = suite
    summary = score_suite(episodes, cfg)["summary"]
    assert set(summary) == {"identity", "permanence", "fall_bounce", "collision", "push"}
    for check, s in summary.items():
        assert s["scored"] >= 5 and s["accuracy"] == 1.0, (check, s)


@pytest.mark.parametrize("size", [40, 96])
def test_ceiling_holds_at_other_frame_sizes(size):
    env = envs.make_real_env("probe", size=size, max_episode_steps=40)
    for family in ("permanence", "collision", "push"):
        for seed in (1, 2):
            agent = make_policy("push" if family == "push" else "noop", env.action_space, 1)
            ep = roll_real(env, agent, 40, options={"family": family, "scenario_seed": seed})
            assert all(r.passed is not False for r in score_episode(ep.frames, ep.state, family)), (family, seed)


def _episode(family, seed, steps=40):
    env = envs.make_real_env("probe", size=64, max_episode_steps=steps)
    agent = make_policy("push" if family == "push" else "noop", env.action_space, 1)
    return roll_real(env, agent, steps, options={"family": family, "scenario_seed": seed})


def _check(results, name):
    return next(r for r in results if r.check == name)


def test_shifted_frames_give_the_shift_as_trajectory_error():
    ep = _episode("fall_bounce", 3)
    shifted = np.full_like(ep.frames, BACKGROUND)
    shifted[:, :, 3:] = ep.frames[:, :, :-3]  # everything 3 pixels to the right
    r = _check(score_episode(shifted, ep.state, "fall_bounce"), "fall_bounce")
    assert r.passed is False
    errs = [e for e in r.details["error_px_per_horizon"] if e is not None]
    assert np.median(errs) == pytest.approx(3.0, abs=0.5)
    exact = _check(score_episode(ep.frames, ep.state, "fall_bounce"), "fall_bounce")
    assert exact.details["max_error_px"] < 0.6  # centroid of a rasterised disc vs its true centre


def _fall_with_restitution(seed, start, e, steps=40):
    """Real fall_bounce frames of `seed` with the restitution set to `e` from frame `start` on: perfect physics
    that does not know the scenario's restitution."""
    env = envs.make_real_env("probe", size=64, max_episode_steps=steps)
    frames = [env.reset(options={"family": "fall_bounce", "scenario_seed": seed})[0]]
    for t in range(steps):
        if t == start - 1:
            env.unwrapped.world.restitution = e
        frames.append(env.step(0)[0])
    return np.stack(frames)


def test_fall_bounce_passes_physics_under_any_restitution_of_the_range_and_nothing_else():
    start = 7  # the probe world model's context: frames 0-6 real
    ep = _episode("fall_bounce", 3)
    pe = ProbeEpisode("fall_bounce", 3, ep)
    admissible = admissible_states(pe, start, 64)
    assert [e for e, _ in admissible][::20] == [0.6, 0.7, 0.8, 0.9]
    for e, strict in ((0.6, False), (0.9, False)):  # the range's ends, far from this episode's own
        frames = _fall_with_restitution(3, start, e)
        r = _check(score_episode(frames, ep.state, "fall_bounce", start=start, admissible=admissible), "fall_bounce")
        assert r.passed is True and r.details["passed_strict"] is strict, (e, r.details["max_error_px"])
        assert r.details["max_error_px"] > 2.0 and r.details["restitution_followed"] == pytest.approx(e)
        alone = _check(score_episode(frames, ep.state, "fall_bounce", start=start), "fall_bounce")
        assert alone.passed is False  # without the admissible trajectories: the strict check
    for e in (0.3, 1.0):  # outside the scenario's range: not this world's physics
        frames = _fall_with_restitution(3, start, e)
        r = _check(score_episode(frames, ep.state, "fall_bounce", start=start, admissible=admissible), "fall_bounce")
        assert r.passed is False, (e, r.details["max_error_px_admissible"])
    shifted = np.full_like(ep.frames, BACKGROUND)
    shifted[:, :, 3:] = ep.frames[:, :, :-3]
    r = _check(score_episode(shifted, ep.state, "fall_bounce", start=start, admissible=admissible), "fall_bounce")
    assert r.passed is False


def test_a_ball_that_vanishes_behind_the_occluder_fails_permanence():
    ep = _episode("permanence", 0, steps=48)
    colour = ep.state["color"][0, 0]
    hidden = np.flatnonzero(ep.state["visible"][:, 0] == 0)
    broken = ep.frames.copy()
    after = broken[hidden[-1]:]
    after[(after == colour).all(axis=-1)] = BACKGROUND  # it never comes back
    assert _check(score_episode(ep.frames, ep.state, "permanence"), "permanence").passed is True
    assert _check(score_episode(broken, ep.state, "permanence"), "permanence").passed is False
    # Drawn over the occluder while it should be hidden: also a failure.
    shown = ep.frames.copy()
    t = hidden[0] + 1  # inside the first hidden stretch
    assert ep.state["visible"][t, 0] == 0
    row, col = world_to_pixel(ep.state["position"][t, 0], (64, 64), 4.0, 4.0)
    rr, cc = np.mgrid[:64, :64] + 0.5
    shown[t][(rr - row) ** 2 + (cc - col) ** 2 <= 9] = colour  # drawn over the occluder
    assert (ep.frames[t][(rr - row) ** 2 + (cc - col) ** 2 <= 9] == OCCLUDER).all()
    assert _check(score_episode(shown, ep.state, "permanence"), "permanence").passed is False


def test_a_recoloured_ball_fails_identity():
    ep = _episode("collision", 0)
    c0 = ep.state["color"][0, 0]
    other = next(c for c in PALETTE if not (ep.state["color"][0, :2] == c).all(axis=1).any())
    wrong = ep.frames.copy()
    wrong[20:][(wrong[20:] == c0).all(axis=-1)] = other
    r = _check(score_episode(wrong, ep.state, "collision"), "identity")
    assert r.passed is False and r.details["first_bad_frame"] == 20


def test_frozen_frames_fail_collision_and_push():
    for family in ("collision", "push"):
        ep = _episode(family, 1)
        frozen = np.repeat(ep.frames[:1], len(ep.frames), axis=0)
        assert _check(score_episode(frozen, ep.state, family), family).passed is False


def test_context_frames_are_not_scored():
    ep = _episode("collision", 2)
    broken = ep.frames.copy()
    broken[:5] = BACKGROUND
    assert _check(score_episode(broken, ep.state, "collision"), "identity").passed is False
    assert _check(score_episode(broken, ep.state, "collision", start=5), "identity").passed is True


def test_blurred_frames_still_detect_balls():
    ep = _episode("collision", 4)
    f = ep.frames.astype(np.float32)
    blurred = (f + np.roll(f, 1, axis=1) + np.roll(f, 1, axis=2) + np.roll(f, -1, axis=2)) / 4  # edge blur
    noisy = np.clip(blurred + np.random.default_rng(0).normal(0, 6, f.shape), 0, 255).astype(np.uint8)
    results = score_episode(noisy, ep.state, "collision")
    assert all(r.passed for r in results)
    assert detect_balls(noisy, ep.state).seen.all()


def test_bad_inputs():
    ep = _episode("collision", 0, steps=5)
    with pytest.raises(ValueError, match="must align"):
        score_episode(ep.frames[:3], ep.state, "collision")
    with pytest.raises(ValueError, match="unknown probe family"):
        score_episode(ep.frames, ep.state, "gravity")
    with pytest.raises(ValueError, match="RGB"):
        score_episode(ep.frames[..., 0], ep.state, "collision")


def test_wilson_interval():
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and 0.69 < lo < 0.73  # 95% lower bound for 10/10 is 0.722
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)
