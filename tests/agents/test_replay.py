import numpy as np
import pytest
from gymnasium import spaces

from worldsim.agents import ReplayAgent


def test_replays_each_worlds_sequence_and_rewinds_on_reset():
    agent = ReplayAgent(spaces.Discrete(5), [np.array([1, 2, 3]), np.array([4, 4, 0])])
    obs = np.zeros((2, 4, 4, 3), np.uint8)
    assert agent.act(obs).tolist() == [1, 4]
    assert agent.act(obs).tolist() == [2, 4]
    agent.reset(np.array([True, False]))
    assert agent.act(obs).tolist() == [1, 0]
    assert agent.steps_taken.tolist() == [1, 3]
    with pytest.raises(ValueError, match="world 1 has played all 3"):
        agent.act(obs)


def test_dict_actions_and_bad_actions():
    space = spaces.Dict({"a": spaces.Discrete(2), "b": spaces.Box(0, 1, (2,))})
    seq = [{"a": 1, "b": np.array([0.5, 0.5], np.float32)}, {"a": 0, "b": np.array([0.0, 1.0], np.float32)}]
    agent = ReplayAgent(space, [seq])
    out = agent.act(np.zeros((1, 4, 4, 3), np.uint8))
    assert out["a"].tolist() == [1] and out["b"].tolist() == [[0.5, 0.5]]
    with pytest.raises(ValueError, match="action 1 of world 0"):
        ReplayAgent(spaces.Discrete(3), [[0, 7]])
