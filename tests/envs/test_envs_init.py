"""Registration of the real worlds with Gymnasium and `make_real_env`."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from worldsim.envs import REAL_ENVS, make_real_env
from worldsim.envs.minedojo import MineDojoUnavailable


def test_all_ids_are_registered():
    assert REAL_ENVS == {
        "crafter": "worldsim-real/Crafter-v0",
        "probe": "worldsim-real/Probe-v0",
        "probe-push": "worldsim-real/ProbePush-v0",
        "minedojo": "worldsim-real/MineDojo-v0",
        "minetest": "worldsim-real/Minetest-v0",
    }
    for env_id in REAL_ENVS.values():
        assert env_id in gym.registry


def test_importing_envs_imports_no_world():
    code = ("import sys, worldsim.envs; "
            "print(sorted(m for m in sys.modules if m.startswith(('worldsim.envs.', 'crafter', 'minedojo', 'Xlib'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_user_folder_named_envs_or_agents_shadows_nothing(tmp_path):
    """Our worlds and agents live under worldsim.*: a user's own envs/ and agents/ packages are theirs."""
    for name in ("envs", "agents"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('the user package was imported')\n")
    code = ("import gymnasium, worldsim; from worldsim.envs import make_real_env; from worldsim.agents import RandomAgent; "
            "env = make_real_env('probe', max_episode_steps=2); env.reset(seed=0); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_make_real_env_probe_passes_kwargs():
    env = make_real_env("probe", size=(48, 80), family="push", max_episode_steps=3)
    obs, info = env.reset(seed=0)
    assert obs.shape == (48, 80, 3) and info["family"] == "push"
    assert env.spec.id == REAL_ENVS["probe"]
    truncated = [env.step(0)[3] for _ in range(3)]
    assert truncated == [False, False, True]


def test_make_real_env_max_episode_steps_lengthens_the_worlds_own_limit():
    """max_episode_steps reaches the world: past the probe world's default 64 steps too (gym.make's TimeLimit alone
    cut such an episode at 64, and `worldsim eval`'s probe suite then ran out of real actions)."""
    env = make_real_env("probe", max_episode_steps=70)
    env.reset(seed=0)
    steps = 0
    while not any(env.step(0)[2:4]):
        steps += 1
    assert steps + 1 == 70 and env.unwrapped.max_episode_steps == 70


def test_make_real_env_crafter():
    pytest.importorskip("crafter")
    env = make_real_env("crafter", size=32)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8 and "state" in info


def test_make_real_env_minedojo_fails_clearly_without_the_game():
    try:
        import minedojo  # noqa: F401
    except ImportError:
        with pytest.raises(MineDojoUnavailable, match="worldsim\\[minedojo\\]"):
            make_real_env("minedojo")
    else:
        pytest.skip("minedojo is installed")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="crafter, probe, probe-push, minedojo, minetest"):
        make_real_env("atari")
