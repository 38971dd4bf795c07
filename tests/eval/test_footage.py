"""Continuing footage with no actions: the null action on an action model, and action-free models."""

import numpy as np
import pytest
from tiny_world_model import FRAME, make_export

from worldsim.data.store import EpisodeStore
from worldsim.eval.config import EvalConfig
from worldsim.eval.run import run_eval
from worldsim.eval.simulated import SimRunner
from worldsim.export import ExportError
from worldsim.sim.config import SimConfig
from worldsim.sim.env import WorldModelEnv


@pytest.fixture(scope="module")
def free_export(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("free"), action_space=None)


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """An action-free store of 3 clips of 12 frames, as `worldsim import-video` writes them."""
    path = tmp_path_factory.mktemp("video") / "v.zarr"
    rng = np.random.default_rng(0)
    with EpisodeStore.create(path, env_id="video", frame_size=(FRAME, FRAME), fps=15, action_space=None) as store:
        for _ in range(3):
            store.append_episode(rng.integers(0, 256, (12, FRAME, FRAME, 3), dtype=np.uint8))
    return path


def test_action_free_model_continues_clips_but_is_no_env(free_export):
    runner = SimRunner(free_export, SimConfig(context_frames=2, sampling_steps=1), num_envs=2)
    rng = np.random.default_rng(1)
    contexts = [rng.integers(0, 256, (3, FRAME, FRAME, 3), dtype=np.uint8) for _ in range(3)]
    a, b = runner.continue_free(contexts, 4, seed=3), runner.continue_free(contexts, 4, seed=3)
    assert a.shape == (3, 8, FRAME, FRAME, 3) and np.array_equal(a, b)  # seeded
    assert not np.array_equal(a[:, -2:], runner.continue_free(contexts, 4, seed=4)[:, -2:])  # and sampled
    with pytest.raises(ValueError, match="action-free"):
        runner.rollout(contexts, [[0, 0]] * 3, [[1, 2]] * 3)
    runner.close()
    with pytest.raises(ExportError, match="action-free model .* cannot be driven as an env"):
        WorldModelEnv(free_export)


def test_null_action_differs_from_every_action(tiny_export):
    runner = SimRunner(make_export(tiny_export.parent / "perturbed"), SimConfig(context_frames=2, sampling_steps=1),
                       num_envs=1)
    context = [np.random.default_rng(2).integers(0, 256, (3, FRAME, FRAME, 3), dtype=np.uint8)]
    free = runner.continue_free(context, 2)
    for a in range(5):
        assert not np.array_equal(free, runner.rollout(context, [[0, 0]], [[a, a]]))
    runner.close()


@pytest.mark.parametrize("which", ["free", "action"])
def test_eval_continues_imported_footage(which, free_export, tiny_export, footage, tmp_path):
    checkpoint = free_export if which == "free" else tiny_export
    cfg = EvalConfig(checkpoint=str(checkpoint), out=str(tmp_path / "e"), video_store=str(footage), seeds=2, steps=4,
                     context_frames=2, sampling_steps=1, schemes=["autoregressive"], idm_episodes=4, idm_train_steps=20,
                     probe_seeds=1, probe_steps=4, loop_lengths=[2], progress=False, world="probe", minedojo=False)
    r = run_eval(cfg).results
    video = r["minecraft"]["video"]
    assert video["actions"] == "none (null action)"
    psnr = video["schemes"]["autoregressive"]["psnr"]
    assert all(5 < p["mean"] < 60 for p in psnr) and len(psnr) == 2  # horizons 1 and 4 (of 1, 4, 16, 64: the 4 steps)
    report = (tmp_path / "e" / "report.md").read_text()
    if which == "free":
        assert "action-free" in r["skipped"]["real_vs_sim"]
        assert "Footage:" in report and "World:" not in report and "## Real vs simulated" not in report
    else:
        assert r["real_vs_sim"]["autoregressive"]["psnr"]
        assert "World: probe" in report
    assert "video, autoregressive: PSNR" in report
