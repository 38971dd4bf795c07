"""TorchRL drives worldsim envs unmodified through its own GymEnv (which passes frameskip to the env)."""

from __future__ import annotations

import pytest

pytest.importorskip("torchrl")

from tiny_world_model import make_export  # noqa: E402
from torchrl.envs import GymEnv  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

import worldsim  # noqa: E402,F401  (registers the envs)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return str(make_export(tmp_path_factory.mktemp("torchrl")))


@pytest.mark.parametrize("frameskip", [1, 2])
def test_gym_env_specs_and_rollout_on_a_simulator(export, frameskip):
    env = GymEnv("worldsim/WorldModel-v0", checkpoint=export, real_env="probe", sampling_steps=1, context_frames=1,
                 max_episode_steps=4, frame_skip=frameskip)
    check_env_specs(env)
    td = env.rollout(6, break_when_any_done=False)
    assert td["next", "pixels"].shape == (6, 16, 16, 3) and td["next", "reward"].shape == (6, 1)
    assert td["next", "done"].any()  # the 4-step limit (in env steps of `frameskip` simulator steps) ends episodes
    env.close()


def test_gym_env_on_the_shipped_probe_simulator():
    env = GymEnv("worldsim/Probes-v0", sampling_steps=1)
    check_env_specs(env)
    td = env.rollout(3)
    assert td["next", "pixels"].shape == (3, 64, 64, 3)
    assert float(td["next", "reward"].abs().sum()) == 0  # the probe world pays nothing, nor does its simulator
    env.close()
