"""The exploring agent: walks, seeded episodes, and walks that come back (`loop_prob`), in real Crafter."""

import numpy as np
import pytest
from gymnasium import spaces

from worldsim.agents import ExploreAgent, make_policy
from worldsim.agents.explore import CRAFTER_MOVES, CRAFTER_OPPOSITE

OBS = np.zeros((1, 4, 4, 3), np.uint8)


def _actions(agent: ExploreAgent, n: int) -> list[int]:
    return [int(agent.act(OBS)[0]) for _ in range(n)]


def _runs(actions: list[int]) -> list[tuple[int, int]]:
    """(action, length) of each run of equal actions."""
    out: list[tuple[int, int]] = []
    for a in actions:
        if out and out[-1][0] == a:
            out[-1] = (a, out[-1][1] + 1)
        else:
            out.append((a, 1))
    return out


def test_walks_are_runs_and_an_episode_depends_only_on_its_seed():
    a = ExploreAgent(spaces.Discrete(17), 1, seed=3)
    b = make_policy("explore", spaces.Discrete(17), 2, seed=50)
    b.reset(np.array([False, True]), [None, 3])
    seq = _actions(a, 300)
    assert seq == [int(b.act(np.zeros((2, 4, 4, 3), np.uint8))[1]) for _ in range(300)]
    moves = [n for act, n in _runs(seq) if act in CRAFTER_MOVES]
    assert np.mean(moves) > 2  # long walks, not random play's single steps


def test_loops_come_back_by_as_many_steps_the_other_way():
    def plans(loop_prob: float) -> list[list[int]]:
        agent = ExploreAgent(spaces.Discrete(17), 1, seed=0, do_prob=0.0, craft_prob=0.0, loop_prob=loop_prob)
        rng = np.random.default_rng(0)
        return [agent._plan(rng) for _ in range(200)]

    def is_loop(plan: list[int]) -> bool:
        half = len(plan) // 2
        return len(plan) % 2 == 0 and plan[:half] == [plan[0]] * half and plan[half:] == [CRAFTER_OPPOSITE[plan[0]]] * half

    assert all(p[0] in CRAFTER_MOVES and is_loop(p) for p in plans(1.0))
    half = sum(is_loop(p) for p in plans(0.5))
    assert 70 < half < 130
    assert not any(is_loop(p) for p in plans(0.0))


def _returns_in_crafter(loop_prob: float) -> tuple[int, int]:
    """(walks that left their start and ended there, walks that left it) over 300 steps of real Crafter."""
    from worldsim.envs import make_real_env

    env = make_real_env("crafter", size=32)
    agent = ExploreAgent(env.action_space, 1, seed=1, do_prob=0.0, craft_prob=0.0, random_prob=0.0, loop_prob=loop_prob)
    obs, info = env.reset(seed=5)
    agent.reset(np.array([True]), [5])
    back = walks = 0
    start, left = info["state"]["player_pos"].copy(), False
    for _ in range(300):
        if not agent._plans[0]:  # the last walk is over: a new one starts here
            back += int(left and (info["state"]["player_pos"] == start).all())
            walks += int(left)
            start, left = info["state"]["player_pos"].copy(), False
        obs, _, term, trunc, info = env.step(int(agent.act(obs[None])[0]))
        left = left or bool((info["state"]["player_pos"] != start).any())
        if term or trunc:
            break
    env.close()
    return back, walks


def test_loops_bring_the_player_back_in_real_crafter():
    pytest.importorskip("crafter")
    back, walks = _returns_in_crafter(1.0)
    plain_back, plain_walks = _returns_in_crafter(0.0)
    assert walks >= 10 and back >= 0.4 * walks  # blocked moves (water, trees, stone) spoil the rest
    assert plain_back <= 0.1 * plain_walks


def test_bad_probability_is_refused():
    with pytest.raises(ValueError, match=r"loop_prob must be a probability in \[0, 1\], got 1.5"):
        ExploreAgent(spaces.Discrete(17), 1, loop_prob=1.5)
