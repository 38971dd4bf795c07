"""MineDojo adapter: what runs without the game (errors and pure conversions).

The conversions are tested on arrays shaped like MineDojo's documented output
(https://docs.minedojo.org/sections/core_api/obs_space.html and action_space.html).
"""

import importlib.util
import shutil
import subprocess
from collections import namedtuple
from types import SimpleNamespace

import numpy as np
import pytest
from gymnasium import spaces

from worldsim.envs.minedojo import (
    ACTION_NVEC,
    NOOP_ACTION,
    STATE_SPEC,
    MineDojoEnv,
    MineDojoUnavailable,
    check_java,
    java_major_version,
    observation_space_for,
    rgb_chw_to_hwc,
    state_from_obs,
    to_gymnasium_space,
)


@pytest.mark.skipif(importlib.util.find_spec("minedojo") is not None, reason="minedojo is installed")
def test_missing_minedojo_says_what_is_needed():
    with pytest.raises(MineDojoUnavailable) as err:
        MineDojoEnv(size=(48, 80))
    msg = str(err.value)
    assert "pip install 'worldsim[minedojo]'" in msg and "Java 8" in msg and "network" in msg


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ('openjdk version "1.8.0_392"\nOpenJDK Runtime Environment (build 1.8.0_392-b08)', 8),
        ('java version "1.8.0_202"', 8),
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK 64-Bit Server VM', 17),
        ('openjdk version "11" 2018-09-25', 11),
        ("bash: java: command not found", None),
    ],
)
def test_java_major_version(text, major):
    assert java_major_version(text) == major


def test_missing_java_is_reported():
    with pytest.raises(MineDojoUnavailable, match="not on PATH.*Java 8"):
        check_java("java-that-does-not-exist-here")


def test_this_machines_java_is_checked():
    java = shutil.which("java")
    if java is None:
        with pytest.raises(MineDojoUnavailable, match="not on PATH"):
            check_java()
        return
    out = subprocess.run([java, "-version"], capture_output=True, text=True)
    if java_major_version(out.stderr + out.stdout) == 8:
        check_java()  # Java 8 present: no error
    else:
        with pytest.raises(MineDojoUnavailable, match="needs Java 8 but .* is Java"):
            check_java()


def test_rgb_chw_to_hwc_moves_the_channel_axis():
    h, w = 48, 80
    rgb = np.random.default_rng(0).integers(0, 256, size=(3, h, w), dtype=np.uint8)  # obs["rgb"]
    out = rgb_chw_to_hwc(rgb)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out[5, 7], rgb[:, 5, 7])
    np.testing.assert_array_equal(out[..., 2], rgb[2])
    assert observation_space_for((h, w)).contains(out)


@pytest.mark.parametrize("bad", [np.zeros((48, 80, 3), np.uint8), np.zeros((3, 48, 80), np.float32), np.zeros((48, 80), np.uint8)])
def test_rgb_chw_to_hwc_refuses_other_layouts(bad):
    with pytest.raises(ValueError, match="MineDojo frame"):
        rgb_chw_to_hwc(bad)


def test_action_space_conversion():
    old = SimpleNamespace(nvec=np.array(ACTION_NVEC), shape=(8,), dtype=np.int64)  # old-gym MultiDiscrete
    space = to_gymnasium_space(old)
    assert isinstance(space, spaces.MultiDiscrete)
    np.testing.assert_array_equal(space.nvec, [3, 3, 4, 25, 25, 8, 244, 36])
    assert space.contains(NOOP_ACTION)
    assert not space.contains(np.array([3, 0, 0, 12, 12, 0, 0, 0]))


def test_box_discrete_and_dict_conversion():
    Box = namedtuple("Box", "low high shape dtype")
    old = SimpleNamespace(spaces={
        "rgb": Box(0, 255, (3, 48, 80), np.uint8),
        "pos": Box(np.full(3, -np.inf), np.full(3, np.inf), (3,), np.float32),
        "flag": SimpleNamespace(n=2),
    })
    space = to_gymnasium_space(old)
    assert isinstance(space, spaces.Dict)
    assert space["rgb"] == spaces.Box(0, 255, (3, 48, 80), np.uint8)
    assert space["pos"].shape == (3,) and space["pos"].dtype == np.float32
    assert space["flag"] == spaces.Discrete(2)
    with pytest.raises(TypeError, match="cannot convert"):
        to_gymnasium_space(object())


def _documented_obs(h=48, w=80):
    """An observation dict with the documented keys and shapes of MineDojo's output."""
    return {
        "rgb": np.zeros((3, h, w), np.uint8),
        "location_stats": {
            "pos": np.array([10.5, 64.0, -3.25], np.float32),
            "yaw": np.array([90.0], np.float32),
            "pitch": np.array([-15.0], np.float32),
            "biome_id": np.array([1], np.int64),
        },
        "life_stats": {"life": np.array([20.0], np.float32), "food": np.array([18.0], np.float32)},
    }


def test_state_from_obs_has_fixed_shapes():
    state = state_from_obs(_documented_obs())
    assert set(state) == set(STATE_SPEC) == set(MineDojoEnv.state_spec())
    for k, (shape, dtype) in STATE_SPEC.items():
        assert state[k].shape == shape and state[k].dtype == dtype
    np.testing.assert_array_equal(state["pos"], [10.5, 64.0, -3.25])
    assert state["yaw"] == 90.0 and state["life"] == 20.0


def test_state_from_obs_names_a_missing_key():
    obs = _documented_obs()
    del obs["life_stats"]["food"]
    with pytest.raises(ValueError, match="life_stats.*food"):
        state_from_obs(obs)
