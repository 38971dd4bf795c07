"""Real-vs-simulated metrics on inputs whose answer is known."""

import math

import numpy as np
import pytest

from worldsim.eval.compare import PSNR_CAP, clip_horizons, frame_scores, per_horizon
from worldsim.eval.consistency import Loop, return_scores
from worldsim.eval.paired import paired_rollouts
from worldsim.metrics import SSIM_K1


def test_identical_frames_score_perfectly():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (3, 8, 16, 16, 3), dtype=np.uint8)
    r = per_horizon(real, real.copy(), k=1)
    assert r["horizons"] == [1, 4, 8]  # 16 and 64 clipped to the 8-step rollout
    assert all(p["mean"] == PSNR_CAP for p in r["psnr"]) and all(s["mean"] == pytest.approx(1.0) for s in r["ssim"])


def test_constant_offset_gives_the_analytic_psnr_and_ssim():
    real = np.full((2, 4, 16, 16, 3), 100, np.uint8)
    sim = np.full_like(real, 110)
    p, s = frame_scores(real, sim)
    assert np.allclose(p, 10 * math.log10(255**2 / 100))  # MSE = 10^2
    c1 = (SSIM_K1 * 255) ** 2  # flat images: only the luminance term is left
    assert np.allclose(s, (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1))


def test_a_one_pixel_shift_of_stripes_gives_the_expected_error():
    stripes = np.zeros((1, 1, 16, 16, 3), np.uint8)
    stripes[..., ::2, :] = 255  # every other column white
    shifted = np.roll(stripes, 1, axis=3)  # now every pixel is wrong by 255
    p, s = frame_scores(stripes, shifted)
    assert p[0, 0] == pytest.approx(0.0) and s[0, 0] < 0  # anti-correlated structure


def test_horizons_are_read_at_the_end_of_each_latent_step():
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (2, 16, 16, 16, 3), dtype=np.uint8)  # 8 latent steps of k = 2
    sim = real.copy()
    sim[:, 7] = 0  # frame 7 ends latent step 4
    r = per_horizon(real, sim, k=2)
    assert r["horizons"] == [1, 4, 8]
    assert [p["mean"] < PSNR_CAP for p in r["psnr"]] == [False, True, False]
    assert len(r["curve"]["psnr"]) == 8 and r["curve"]["psnr"][3] < PSNR_CAP


def test_bad_inputs():
    with pytest.raises(ValueError, match="differ in shape"):
        per_horizon(np.zeros((1, 2, 16, 16, 3), np.uint8), np.zeros((1, 3, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="whole number of latent steps"):
        per_horizon(np.zeros((1, 3, 16, 16, 3), np.uint8), np.zeros((1, 3, 16, 16, 3), np.uint8), k=2)
    assert clip_horizons((1, 4, 16, 64), 3) == [1, 3]


def test_paired_real_rollouts_repeat_exactly_and_hold_actions():
    a = paired_rollouts("probe", [3, 4], steps=6, k=2, context=3)
    b = paired_rollouts("probe", [3, 4], steps=6, k=2, context=3)
    assert a.real.shape == (2, 12, 64, 64, 3) and np.array_equal(a.real, b.real)
    ep = a.episodes[0]
    assert all(ep.actions[i] == ep.actions[i + 1] for i in range(0, len(ep.actions), 2))  # held for k = 2
    assert [ep.actions[2 + 2 * j] for j in range(6)] == a.actions[0]


def test_look_away_and_back_returns_to_the_same_frame_in_the_real_probe_world():
    loop = Loop(n=6, away=3, back=4)  # pusher up then down, the ball resting
    p = paired_rollouts("probe", [0, 1], steps=12, actions=loop.actions(), reset_options={"family": "push"})
    before, returned = np.stack([ep.frames[0] for ep in p.episodes]), p.real[:, -1]
    away = return_scores(before, p.real[:, 5])
    back = return_scores(before, returned)
    assert back["psnr"] == [PSNR_CAP, PSNR_CAP] and all(v < 40 for v in away["psnr"])


def test_a_seed_whose_real_episode_ends_early_is_replaced_when_asked_and_refused_otherwise():
    """Crafter's seed 200011 dies after 30 random steps, before a 16-latent-step comparison (k = 2) ends."""
    with pytest.raises(ValueError, match="seed 200011 ended after 30 steps"):
        paired_rollouts("crafter", [200011, 200012], steps=16, k=2, context=7, size=72)
    p = paired_rollouts("crafter", [200011, 200012], steps=16, k=2, context=7, size=72, replace_short=True)
    assert p.seeds == [200012, 200013] and p.real.shape[:2] == (2, 32)
    again = paired_rollouts("crafter", [200012, 200013], steps=16, k=2, context=7, size=72)
    assert np.array_equal(again.real, p.real)  # the replacement is the seed's own episode, as if asked for
