"""The push task: reward 1 and termination when the target ball reaches the goal zone; a pushing policy wins."""

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

import worldsim  # noqa: F401  (registers worldsim-real/*)
from worldsim.agents import PushAgent, RandomAgent
from worldsim.envs.probe.task import ZONE


def _run(env, agent, seed):
    obs, info = env.reset(seed=seed)
    for t in range(env.unwrapped.max_episode_steps):
        obs, reward, terminated, truncated, info = env.step(int(agent.act(obs[None])[0]))
        if terminated or truncated:
            return reward, terminated, t + 1
    raise AssertionError("the episode never ended")


def test_the_task_follows_the_gymnasium_contract_and_shows_its_zone():
    env = gym.make("worldsim-real/ProbePush-v0")
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    x0, x1 = info["zone"]
    assert 0 < x0 < x1 <= 4.0 and info["state"]["position"][0, 0] + 0.5 <= x0  # to the right, never already reached
    assert (obs == ZONE).all(axis=-1).sum() > 0  # the goal band is drawn


def test_pushing_wins_and_random_play_rarely_does():
    env = gym.make("worldsim-real/ProbePush-v0")
    pusher = PushAgent(env.action_space, 1)
    pushed = [_run(env, pusher, seed) for seed in range(10)]
    assert sum(reward == 1.0 and terminated for reward, terminated, _ in pushed) >= 8  # (it pushes the nearest ball)
    rng = RandomAgent(env.action_space, 1, seed=0)
    random = [_run(env, rng, seed) for seed in range(10)]
    wins = sum(r for r, _, _ in random)
    assert wins <= 3 and all(r in (0.0, 1.0) for r, _, _ in random)
    assert np.median([t for *_, t in pushed]) < 20  # a win comes fast and ends the episode
