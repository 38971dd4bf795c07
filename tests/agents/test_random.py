import numpy as np
import pytest
from gymnasium import spaces

from worldsim.agents import RandomAgent, make_policy


@pytest.mark.parametrize("space", [spaces.Discrete(17), spaces.MultiDiscrete([3, 4]),
                                   spaces.Box(-1, 1, (2,)), spaces.Dict({"a": spaces.Discrete(2), "b": spaces.Box(0, 1, (3,))})])
def test_actions_are_in_the_space_and_batched(space):
    agent = RandomAgent(space, num_envs=3, seed=0)
    actions = agent.act(np.zeros((3, 8, 8, 3), np.uint8))
    from gymnasium.vector.utils import batch_space, iterate

    assert batch_space(space, 3).contains(actions)
    assert len(list(iterate(batch_space(space, 3), actions))) == 3


def test_an_episode_depends_only_on_its_seed():
    a, b = RandomAgent(spaces.Discrete(17), 1, seed=0), RandomAgent(spaces.Discrete(17), 3, seed=99)
    a.reset(np.array([True]), [7])
    b.reset(np.array([False, True, False]), [None, 7, None])
    obs1, obs3 = np.zeros((1, 4, 4, 3), np.uint8), np.zeros((3, 4, 4, 3), np.uint8)
    seq_a = [int(a.act(obs1)[0]) for _ in range(20)]
    seq_b = [int(b.act(obs3)[1]) for _ in range(20)]
    assert seq_a == seq_b and len(set(seq_a)) > 3


def test_wrong_batch_and_unknown_policy():
    with pytest.raises(ValueError, match="3 worlds"):
        RandomAgent(spaces.Discrete(2), 3).act(np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="random"):
        make_policy("clever", spaces.Discrete(2), 1)
