"""Stable-Baselines3 trains on the batched simulator through `worldsim.integrations.sb3` (a real PPO run)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402
from tiny_world_model import make_export  # noqa: E402

from worldsim.integrations.sb3 import WorldModelVecEnv, make_vec_env  # noqa: E402

FAST = {"sampling_steps": 1, "context_frames": 1, "real_env": "probe"}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return str(make_export(tmp_path_factory.mktemp("sb3")))


def test_ppo_trains_on_the_batched_simulator(export):
    venv = make_vec_env("worldsim/WorldModel-v0", num_envs=2, checkpoint=export, max_episode_steps=5, **FAST)
    assert isinstance(venv, WorldModelVecEnv) and venv.num_envs == 2
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=8, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=32)
    assert model.num_timesteps >= 32
    venv.close()


def test_sb3_auto_reset_and_terminal_observation(export):
    venv = make_vec_env("worldsim/WorldModel-v0", num_envs=2, checkpoint=export, max_episode_steps=2, **FAST)
    venv.seed(3)
    obs = venv.reset()
    assert obs.shape == (2, *venv.observation_space.shape) and obs.dtype == np.uint8
    venv.step(np.array([1, 2]))
    obs, reward, done, infos = venv.step(np.array([1, 2]))  # the second step hits the limit of 2
    assert done.all() and reward.dtype == np.float32
    for i in range(2):
        assert infos[i]["TimeLimit.truncated"] and infos[i]["terminal_observation"].shape == obs[i].shape
    obs, _, done, _ = venv.step(np.array([0, 0]))  # already reset: a fresh episode goes on
    assert not done.any()
    venv.close()


def test_real_worlds_go_through_sb3s_own_vec_env():
    venv = make_vec_env("worldsim-real/Probe-v0", num_envs=2, size=16, max_episode_steps=4)
    assert isinstance(venv, DummyVecEnv) and venv.reset().shape == (2, 16, 16, 3)
    venv.close()


def test_ppo_cnn_policy_trains_a_few_hundred_steps_on_the_shipped_crafter_simulator():
    pytest.importorskip("crafter")
    venv = make_vec_env("worldsim/Crafter-v0", num_envs=2, sampling_steps=1, context_frames=2)
    assert venv.observation_space.shape == (72, 72, 3) and venv.action_space.n == 17  # the shipped model sees 72x72
    model = PPO("CnnPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    venv.close()
