"""CrafterEnv: Gymnasium contract, seeded worlds, truncation and termination."""

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("crafter")

from worldsim.envs import REAL_ENVS  # noqa: E402
from worldsim.envs.crafter import ACHIEVEMENT_KEYS, INVENTORY_KEYS, CrafterEnv  # noqa: E402

ACTIONS = np.random.default_rng(0).integers(0, 17, size=25)


def _rollout(env, seed, actions=ACTIONS):
    obs, info = env.reset(seed=seed)
    frames, states = [obs], [info["state"]]
    for a in actions:
        obs, _, _, _, info = env.step(a)
        frames.append(obs)
        states.append(info["state"])
    return np.stack(frames), states


def test_check_env_passes_without_warnings():
    env = gym.make(REAL_ENVS["crafter"], render_mode="rgb_array").unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=False)


def test_same_seed_same_episode_other_seed_differs():
    env = CrafterEnv()
    f1, s1 = _rollout(env, 5)
    f2, s2 = _rollout(CrafterEnv(), 5)
    np.testing.assert_array_equal(f1, f2)
    for a, b in zip(s1, s2):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    f3, _ = _rollout(env, 6, actions=[])
    assert not np.array_equal(f1[0], f3[0])


def test_unseeded_reset_continues_a_deterministic_sequence():
    a, b = CrafterEnv(), CrafterEnv()
    first = a.reset(seed=9)[0]
    b.reset(seed=9)
    second_a, second_b = a.reset()[0], b.reset()[0]
    np.testing.assert_array_equal(second_a, second_b)
    assert not np.array_equal(first, second_a)  # a new world, not the same one again


def test_worlds_do_not_depend_on_the_process():
    """Crafter hashes (seed, episode) for the world seed; the result must not vary per process."""
    code = "from worldsim.envs.crafter import CrafterEnv; import hashlib; print(hashlib.sha1(CrafterEnv().reset(seed=3)[0].tobytes()).hexdigest())"
    digests = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": str(h)}).stdout
        for h in (1, 2)
    }
    assert len(digests) == 1


@pytest.mark.parametrize("size", [(48, 80), 32])
def test_other_sizes(size):
    env = CrafterEnv(size=size)
    hw = (size, size) if isinstance(size, int) else size
    obs, _ = env.reset(seed=0)
    assert obs.shape == (*hw, 3) and obs.dtype == np.uint8
    assert env.observation_space.shape == (*hw, 3)
    assert env.step(0)[0].shape == (*hw, 3)


def test_truncates_at_max_episode_steps():
    env = CrafterEnv(max_episode_steps=6)
    env.reset(seed=0)
    flags = [env.step(0)[2:4] for _ in range(6)]
    assert flags == [(False, False)] * 5 + [(False, True)]


def test_death_terminates_and_does_not_truncate():
    env = CrafterEnv(max_episode_steps=100)
    env.reset(seed=0)
    env._env._player.health = 0  # the player dies: crafter's own death check must fire
    _, _, terminated, truncated, info = env.step(0)
    assert terminated and not truncated and info["discount"] == 0.0


def test_state_is_fixed_shape_and_matches_info():
    env = CrafterEnv(area=(32, 32))
    spec = env.state_spec()
    _, states = _rollout(env, 1)
    obs, _, _, _, info = env.step(0)
    for state in states + [info["state"]]:
        assert set(state) == set(spec)
        for k, (shape, dtype) in spec.items():
            assert state[k].shape == shape and state[k].dtype == dtype, k
    assert list(info["state"]["inventory"]) == [info["inventory"][k] for k in INVENTORY_KEYS]
    assert list(info["state"]["achievements"]) == [info["achievements"][k] for k in ACHIEVEMENT_KEYS]
    assert states[0]["inventory"][0] == 9  # full health at the start
    assert np.all((0 <= info["state"]["player_pos"]) & (info["state"]["player_pos"] < 32))


def test_invalid_action():
    env = CrafterEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(17)


def test_missing_crafter_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "crafter", None)  # what an uninstalled package looks like to import
    with pytest.raises(ImportError, match=r"pip install 'worldsim\[crafter\]'"):
        CrafterEnv()


def test_same_seed_and_actions_give_the_same_frames_in_another_process():
    """Crafter iterated its chunks' object sets in memory-address order; the adapter must make that deterministic."""
    import os
    import subprocess
    import sys

    script = (
        "import hashlib, numpy as np, envs\n"
        "env = envs.make_real_env('crafter', size=64, max_episode_steps=400)\n"
        "rng = np.random.default_rng(0); h = hashlib.sha256()\n"
        "for seed in range(3):\n"
        "    obs, _ = env.reset(seed=seed); h.update(obs.tobytes())\n"
        "    for _ in range(400):\n"
        "        obs, r, term, trunc, _ = env.step(int(rng.integers(17))); h.update(obs.tobytes())\n"
        "        if term or trunc: break\n"
        "print(h.hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1
