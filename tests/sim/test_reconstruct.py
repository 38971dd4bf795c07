"""`Simulator.reconstruct`: the real frames through the simulator's autoencoder, what perfect latents draw (the
evaluation's autoencoder ceiling)."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import worldsim  # noqa: F401  (registers the real worlds)
from worldsim.frames import frames_to_float
from worldsim.metrics import psnr
from worldsim.pretrained import pretrained_path
from worldsim.sim.config import SimConfig
from worldsim.sim.simulator import Simulator


def _probe_frames(n: int) -> np.ndarray:
    env = gym.make("worldsim-real/Probe-v0", size=64)
    obs, _ = env.reset(seed=3)
    frames = [obs]
    for a in np.random.default_rng(0).integers(0, 5, n - 1):
        frames.append(env.step(int(a))[0])
    env.close()
    return np.stack(frames)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(psnr(frames_to_float(torch.from_numpy(a)), frames_to_float(torch.from_numpy(b)), 2.0).mean())


def test_the_shipped_probe_autoencoder_draws_the_frames_it_is_given():
    sim = Simulator(pretrained_path("probes"), SimConfig(dtype="float32"))
    frames = _probe_frames(17)  # 1 + 8 latent steps of k = 2
    drawn = sim.reconstruct(frames)
    assert drawn.shape == frames.shape and drawn.dtype == np.uint8
    same, shifted = _psnr(drawn[1:], frames[1:]), _psnr(drawn[1:], frames[:-1])
    assert same > 30 and same > shifted + 3, (same, shifted)  # its own frames, not the ones before
    with pytest.raises(ValueError, match="frames must be uint8"):
        sim.reconstruct(frames[..., :2])
