"""Fitting the pixel refiner (worldsim.train.frame_refiner, scripts/fit_refiner.py) on the shipped probe simulator's frames."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from worldsim.agents import make_policy
from worldsim.envs import make_real_env
from worldsim.eval.episodes import roll_real
from worldsim.models.frame_refiner import FrameRefiner, FrameRefinerConfig, load_frame_refiner
from worldsim.pretrained import pretrained_path
from worldsim.sim.config import SimConfig
from worldsim.sim.simulator import Simulator
from worldsim.train.frame_refiner import fit_frame_refiner, refiner_windows


@pytest.fixture(scope="module")
def sim():
    torch.set_num_threads(1)
    return Simulator(pretrained_path("probes"), SimConfig(refine=False, dtype="float32"))


def test_windows_hold_the_real_context_the_served_proposal_and_the_real_frames(sim):
    windows = refiner_windows(sim, "probe", [5, 6], steps=2, stride=16, progress=False)
    n = len(windows["action"])
    assert n == 2 * 4 * 2  # 2 episodes of 65 frames: starts 0, 16, 32, 48; 2 steps each
    assert windows["history"].shape == (n, 4, 64, 64, 3) and windows["proposal"].shape == windows["target"].shape == (n, 2, 64, 64, 3)
    env = make_real_env("probe", size=64)
    ep = roll_real(env, make_policy("random", env.action_space, 1, seed=5), 64, seed=5, hold=2)  # as the windows roll it
    env.close()
    first = np.flatnonzero(windows["step"] == 0)[0]
    np.testing.assert_array_equal(windows["history"][first], ep.frames[3:7])  # the last 4 of the 7 context frames
    np.testing.assert_array_equal(windows["target"][first], ep.frames[7:9])  # the real frames of the step
    assert windows["action"][first, 0] == ep.actions[6] == ep.actions[7]  # the step's action, held for its 2 frames
    second = np.flatnonzero(windows["step"] == 1)[0]  # the same start's second step: shown before it, the first proposal
    np.testing.assert_array_equal(windows["history"][second, -2:], windows["proposal"][first])
    np.testing.assert_array_equal(windows["history"][second, :2], windows["history"][first, 2:])
    # the proposal is the served simulator's frame: far closer to the real next frames than a random palette image
    mse = ((windows["proposal"].astype(float) - windows["target"].astype(float)) ** 2).mean()
    assert 10 * np.log10(255 ** 2 / mse) > 20


def cross_entropy(net, data):
    with torch.no_grad():
        logits = net(data["history"], data["proposal"], data["action"])
        return float(torch.nn.functional.cross_entropy(logits.permute(0, 1, 3, 4, 2).reshape(-1, logits.shape[2]),
                                                       net.classes(data["target"]).reshape(-1)))


def test_fitting_learns_the_windows_it_sees(sim):
    windows = refiner_windows(sim, "probe", [7], steps=1, stride=8, progress=False)
    net = FrameRefiner(FrameRefinerConfig(tuple(sim.autoencoder.cfg.palette), 5))
    data = {k: torch.from_numpy(v) for k, v in windows.items()}
    before = cross_entropy(net, data)
    torch.manual_seed(0)
    curve = fit_frame_refiner(net, windows, steps=120, batch=4, lr=2e-3, held_out=1, every=60, progress=False)
    assert [c["step"] for c in curve] == [0, 60, 120]
    assert cross_entropy(net, data) < 0.7 * before  # it fits what it is shown (the last real frames' colours)


def test_the_script_writes_a_refiner_the_simulator_loads(tmp_path):
    out, curve = tmp_path / "refiner.safetensors", tmp_path / "curve.json"
    run = subprocess.run([sys.executable, "scripts/fit_refiner.py", str(pretrained_path("probes")), "--episodes", "2",
                          "--steps", "4", "--every", "2", "--held-out", "4", "--stride", "16", "--out", str(out),
                          "--curve", str(curve)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    net, extra = load_frame_refiner(out)
    assert extra["episodes"] == 2 and [c["step"] for c in extra["curve"]] == [0, 2, 4] and curve.exists()
    bad = subprocess.run([sys.executable, "scripts/fit_refiner.py", str(pretrained_path("probes")), "--episodes", "1",
                          "--stride", "32", "--out", str(tmp_path / "x.safetensors")], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: 2 windows, none left to fit")
