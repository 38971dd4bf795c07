import numpy as np
import pytest
from tiny_world_model import ACTIONS, FRAME

from worldsim.data.store import EpisodeStore
from worldsim.eval.calibration import calibrate, calibration_report


def test_a_perfect_head_reports_perfect_calibration_and_a_biased_one_its_bias():
    rng = np.random.default_rng(0)
    real = rng.choice([0.0, 0.0, 0.0, 1.0, -0.1], size=400)
    action = rng.integers(0, 3, size=400).astype(float)
    term = (rng.random(400) < 0.05).astype(float)
    p = {"reward": real, "reward_pred": real.copy(), "terminated": term, "termination_prob": term * 0.9 + 0.05,
         "action": action}
    r = calibration_report(p, ["noop", "left", "right"])
    assert r["reward"]["mse"] == 0 and r["reward"]["correlation"] == pytest.approx(1.0)
    assert all(abs(float(v) - b["predicted"]) < 1e-9 for v, b in r["reward"]["by_real_value"].items())
    assert set(r["reward"]["by_action"]) == {"noop", "left", "right"}
    assert r["termination"]["precision"] == 1.0 and r["termination"]["recall"] == 1.0
    # a head that pays 0.5 too much for "left" shows it, and only there
    biased = {**p, "reward_pred": real + 0.5 * (action == 1)}
    by_action = calibration_report(biased, ["noop", "left", "right"])["reward"]["by_action"]
    assert by_action["left"]["predicted"] - by_action["left"]["real"] == pytest.approx(0.5)
    assert by_action["noop"]["predicted"] == pytest.approx(by_action["noop"]["real"])


def test_calibrate_reads_the_heads_on_real_held_out_episodes(tiny_export, tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "real.zarr"
    with EpisodeStore.create(path, env_id="test", frame_size=(FRAME, FRAME), fps=15.0, action_space=ACTIONS) as store:
        for _ in range(4):
            steps = 20
            reward = np.zeros(steps, np.float32)
            reward[7] = 1.0
            store.append_episode(rng.integers(0, 256, (steps + 1, FRAME, FRAME, 3), dtype=np.uint8),
                                 list(rng.integers(0, 5, steps)), reward)
    report = calibrate(tiny_export, path, episodes=[1, 3])
    assert report["episodes"] == [1, 3] and report["frames"] == 2 * 10  # 11 latent frames each, the first is context
    assert report["reward"]["real_mean"] == pytest.approx(2 / 20)  # one +1 per episode, in one latent frame
    assert report["termination"]["real_rate"] == 0 and 0 <= report["termination"]["mean_probability"] <= 1
