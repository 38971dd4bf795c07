"""WorldModelVectorEnv: equal to its sub-envs run one by one, NEXT_STEP autoreset, the vector contract."""

import gymnasium as gym
import numpy as np
import pytest

import worldsim.sim  # noqa: F401
from worldsim.sim.env import WorldModelEnv
from worldsim.sim.vector_env import WorldModelVectorEnv
from worldsim.spaces import ActionError

from tiny_world_model import FRAME

FAST = {"sampling_steps": 1, "context_frames": 3}
EXACT = {**FAST, "dtype": "float32"}  # batching is exact in float32; bf16 (auto on AMX CPUs) agrees only to ~50 dB


@pytest.mark.parametrize("sampler,reencode", [("euler", False), ("heun", False), ("euler", True)])
def test_vector_env_equals_sub_envs_one_by_one(export_dir, store_path, sampler, reencode):
    # Dataset episodes of 13, 10 and 4 rows give contexts of different lengths: one forward, shorter ones padded and
    # masked; re-encoding, one batched streaming encode of every sub-env's new frames.
    n, steps = 3, 4
    actions = np.random.default_rng(0).integers(0, 5, (steps, n))
    venv = WorldModelVectorEnv(n, export_dir, dataset=store_path, sampler=sampler, reencode=reencode, **EXACT)
    obs, _ = venv.reset(seed=10)
    vec_obs, vec_rewards = [obs], []
    for a in actions:
        obs, r, _, _, info = venv.step(a)
        assert info["_frames"].all()
        vec_obs.append(obs)
        vec_rewards.append(r)
    venv.close()
    for i in range(n):
        env = WorldModelEnv(export_dir, dataset=store_path, sampler=sampler, reencode=reencode, **EXACT)
        obs, _ = env.reset(seed=10 + i)
        assert np.array_equal(obs, vec_obs[0][i])
        for t, a in enumerate(actions):
            obs, r, *_ = env.step(int(a[i]))
            assert np.abs(obs.astype(int) - vec_obs[t + 1][i].astype(int)).max() <= 1
            assert abs(r - vec_rewards[t][i]) < 1e-4
        env.close()


def test_make_vec_and_next_step_autoreset(export_dir):
    venv = gym.make_vec("worldsim/WorldModel-v0", num_envs=2, vectorization_mode="vector_entry_point",
                        checkpoint=export_dir, max_episode_steps=2, **FAST)
    assert isinstance(venv.unwrapped, WorldModelVectorEnv)
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert venv.observation_space.shape == (2, FRAME, FRAME, 3) and venv.single_action_space == gym.spaces.Discrete(5)
    start = np.full((3, FRAME, FRAME, 3), 50, np.uint8)
    obs, _ = venv.reset(seed=0, options={"frames": start})
    assert venv.observation_space.contains(obs)
    assert not venv.step(np.array([1, 2]))[3].any()
    _, _, terminated, truncated, _ = venv.step(np.array([1, 2]))
    assert truncated.all() and not terminated.any()
    obs, reward, terminated, truncated, info = venv.step(np.array([1, 2]))  # the autoreset step
    assert not info["_frames"].any() and (reward == 0).all() and not (terminated | truncated).any()
    assert np.array_equal(obs, np.stack([start[-1]] * 2))
    venv.step(np.array([3, 4]))  # and stepping goes on
    venv.close()
    with pytest.raises(RuntimeError, match="step called after close"):
        venv.step(np.array([1, 2]))
    with pytest.raises(RuntimeError, match="reset called after close"):
        venv.reset(seed=0, options={"frames": start})


def test_reset_mask_and_determinism(export_dir, store_path):
    venv = WorldModelVectorEnv(2, export_dir, dataset=store_path, **FAST)
    a, _ = venv.reset(seed=5)
    s1 = venv.step(np.array([0, 1]))[0]
    b, _ = venv.reset(seed=5)
    s2 = venv.step(np.array([0, 1]))[0]
    assert np.array_equal(a, b) and np.array_equal(s1, s2)
    before = venv.step(np.array([0, 1]))[0]
    after, _ = venv.reset(options={"reset_mask": np.array([False, True]), "frames": np.zeros((1, FRAME, FRAME, 3), np.uint8)})
    assert np.array_equal(after[0], before[0]) and (after[1] == 0).all()
    with pytest.raises(ActionError, match="Discrete"):
        venv.step(np.array([0, 9]))
    venv.close()


def test_vector_frameskip_equals_the_single_env(export_dir):
    start = {"frames": np.full((FRAME, FRAME, 3), 90, np.uint8)}
    venv = WorldModelVectorEnv(2, export_dir, frameskip=2, **EXACT)
    venv.reset(seed=7, options=start)
    obs, reward, _, _, info = venv.step(np.array([1, 3]))
    assert info["frames"].shape[1] == 2 * venv.sim.k
    for i, a in enumerate((1, 3)):
        env = WorldModelEnv(export_dir, frameskip=2, **EXACT)
        env.reset(seed=7 + i, options=start)
        o, r, *_ = env.step(a)
        assert np.abs(o.astype(int) - obs[i].astype(int)).max() <= 1 and abs(r - reward[i]) < 1e-4
        env.close()
    venv.close()
