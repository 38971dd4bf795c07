import numpy as np
import pytest
from gymnasium import spaces

from worldsim import envs
from worldsim.agents import Agent, NoopAgent, PushAgent, make_policy
from worldsim.agents.probe import colour_centroid
from worldsim.envs.probe.render import PALETTE


def test_push_agent_pushes_the_ball_right_in_every_push_scenario():
    env = envs.make_real_env("probe", size=64, max_episode_steps=30)
    agent = make_policy("push", env.action_space, 1)
    assert isinstance(agent, Agent)
    for seed in range(4):
        obs, info = env.reset(options={"family": "push", "scenario_seed": seed})
        x0, xs = info["state"]["position"][0, 0], []
        for _ in range(15):
            obs, *_, info = env.step(int(agent.act(obs[None])[0]))
            xs.append(info["state"]["position"][0, 0])
        assert max(xs) > x0 + 0.5  # pushed at least half a metre right


def test_push_agent_goes_around_to_the_left_of_a_ball_and_lines_up():
    env = envs.make_real_env("probe", size=64, max_episode_steps=80)
    obs, info = env.reset(options={"family": "push", "scenario_seed": 0})
    # Put the pusher above and to the right of the ball: it must come back left and down first.
    env.unwrapped.world.pusher_pos[:] = [3.5, 3.0]
    obs = env.unwrapped._draw()
    agent = PushAgent(env.action_space, 1)
    actions, ball_vx = [], []
    for _ in range(40):
        a = int(agent.act(obs[None])[0])
        obs, *_, info = env.step(a)
        actions.append(a)
        ball_vx.append(info["state"]["velocity"][0, 0])
    assert {1, 4} <= set(actions[:20]) and 2 not in actions[:9]  # left and down while getting into place
    pushing = [i for i, a in enumerate(actions) if a == 2 and ball_vx[i] > 1.0]
    assert pushing and min(pushing) > 20  # then pushing the ball right


def test_noop_agent_and_bad_inputs():
    agent = NoopAgent(spaces.Discrete(5), 2)
    assert agent.act(np.zeros((2, 8, 8, 3), np.uint8)).tolist() == [0, 0]
    with pytest.raises(ValueError, match="2 worlds"):
        agent.act(np.zeros((3, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="Discrete\\(5\\)"):
        PushAgent(spaces.Discrete(17), 1)


def test_colour_centroid_of_a_drawn_square():
    frame = np.zeros((10, 10, 3), np.uint8)
    frame[2:4, 6:8] = PALETTE[0]
    c, n = colour_centroid(frame, PALETTE[0])
    assert n == 4 and np.allclose(c, [3.0, 7.0])
    c, n = colour_centroid(frame, PALETTE[1])
    assert n == 0 and np.isnan(c).all()
