"""Held-action calibration: imagined returns from the simulator's heads against a real world's returns."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from tiny_world_model import FRAME, make_export

from worldsim.eval.held_actions import held_action_report
from worldsim.sim.vector_env import WorldModelVectorEnv


class PayingWorld(gym.Env):
    """Action 1 pays +1 a step, action 4 ends the episode (terminated), the rest pay nothing."""

    observation_space = spaces.Box(0, 255, (FRAME, FRAME, 3), np.uint8)
    action_space = spaces.Discrete(5)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((FRAME, FRAME, 3), np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.zeros((FRAME, FRAME, 3), np.uint8), float(action == 1), bool(action == 4), self.t >= 200, {}


def report(export, horizon=3, seed=0):
    envs = WorldModelVectorEnv(4, export, real_env="probe", context_frames=1, sampling_steps=1,
                               max_episode_steps=horizon)
    try:
        return held_action_report(envs, PayingWorld(), horizon, episodes=6, warmup=(0, 0), seed=seed,
                                  action_names=["noop", "pay", "b", "c", "die"])
    finally:
        envs.close()


def test_real_returns_and_terminations_are_the_worlds(tmp_path):
    r = report(make_export(tmp_path / "export"))
    rows = r["scripts"]
    assert list(rows) == ["noop", "pay", "b", "c", "die", "random"]
    assert rows["pay"]["real"]["return"]["mean"] == 3.0 and rows["noop"]["real"]["return"]["mean"] == 0.0
    assert rows["die"]["real"]["terminated"] == 1.0 and rows["pay"]["real"]["terminated"] == 0.0
    assert all(row["real"]["episodes"] == 6 and row["imagined"]["episodes"] == 4 for row in rows.values())
    assert all(row["imagined"]["terminated"] == 0.0 for row in rows.values())  # the tiny head never ends one
    assert r == report(make_export(tmp_path / "again"))  # seeded: the same numbers again


def test_imagined_episodes_end_where_the_termination_head_says(tmp_path):
    ends_at_once = report(make_export(tmp_path / "export", termination_bias=8.0))
    never = report(make_export(tmp_path / "never", termination_bias=-8.0))
    for name in ends_at_once["scripts"]:
        assert ends_at_once["scripts"][name]["imagined"]["terminated"] == 1.0
        assert never["scripts"][name]["imagined"]["terminated"] == 0.0
    # one step's reward against three steps' (the heads are the same weights but for the termination bias)
    assert ends_at_once["scripts"]["noop"]["imagined"]["return"] != never["scripts"]["noop"]["imagined"]["return"]


def test_mismatched_worlds_are_refused(tmp_path):
    envs = WorldModelVectorEnv(2, make_export(tmp_path / "export"), real_env="probe", context_frames=1)
    other = PayingWorld()
    other.action_space = spaces.Discrete(3)
    with pytest.raises(ValueError, match="one Discrete action space"):
        held_action_report(envs, other, 3, episodes=2)
    with pytest.raises(ValueError, match="horizon >= 1"):
        held_action_report(envs, PayingWorld(), 0, episodes=2)
    envs.close()
