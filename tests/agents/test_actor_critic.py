"""The actor-critic: lambda-returns, learning a small pixel task, training in imagination, saved weights."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from tiny_world_model import make_export

from worldsim.agents import make_policy
from worldsim.agents.actor_critic import ActorCritic, ActorCriticAgent, ActorCriticNetConfig, load_actor_critic, \
    save_actor_critic
from worldsim.agents.random import RandomAgent
from worldsim.agents.train_ac import ActorCriticConfig, HoldAction, lambda_returns, real_vector_env, train_actor_critic
from worldsim.envs import make_real_env
from worldsim.eval.episodes import roll_real
from worldsim.sim.vector_env import WorldModelVectorEnv


class Corridor(gym.Env):
    """A pixel task that needs vision: walk to the end of a corridor marked green (+1), not the red one (-1).

    16x16 frames; 8 cells of 2 pixels; the walker (white) starts in the middle; which end is the
    goal is drawn per episode. Actions: 0 stay, 1 left, 2 right. Truncated after 12 steps.
    """

    def __init__(self):
        self.observation_space = spaces.Box(0, 255, (16, 16, 3), np.uint8)
        self.action_space = spaces.Discrete(3)

    def _obs(self):
        frame = np.zeros((16, 16, 3), np.uint8)
        goal, trap = (0, 7) if self.goal_left else (7, 0)
        frame[4:12, 2 * goal:2 * goal + 2, 1] = 255
        frame[4:12, 2 * trap:2 * trap + 2, 0] = 255
        frame[6:10, 2 * self.pos:2 * self.pos + 2] = 255
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.goal_left, self.pos, self.t = bool(self.np_random.integers(2)), int(self.np_random.integers(3, 5)), 0
        return self._obs(), {}

    def step(self, action):
        self.pos = int(np.clip(self.pos + (0, -1, 1)[int(action)], 0, 7))
        self.t += 1
        at_end = self.pos in (0, 7)
        reward = float(at_end) * (1.0 if (self.pos == 0) == self.goal_left else -1.0)
        return self._obs(), reward, at_end, self.t >= 12 and not at_end, {}


def mean_return(agent, episodes: int = 48) -> float:
    env = Corridor()
    return float(np.mean([roll_real(env, agent, 12, seed=1000 + s).reward.sum() for s in range(episodes)]))


def test_lambda_returns_on_known_inputs():
    r = torch.tensor([[1.0], [2.0], [3.0]])  # (T=3, N=1)
    v = torch.tensor([[10.0], [20.0], [30.0], [40.0]])
    no = torch.zeros(3, 1, dtype=torch.bool)
    g, lam = 0.5, 0.5
    g2 = 3 + g * 40
    g1 = 2 + g * ((1 - lam) * 30 + lam * g2)
    g0 = 1 + g * ((1 - lam) * 20 + lam * g1)
    assert torch.allclose(lambda_returns(r, no, no, v, g, lam), torch.tensor([[g0], [g1], [g2]]))
    # lam = 1 and no bootstrap is the discounted reward-to-go; lam = 0 is one-step TD.
    assert torch.allclose(lambda_returns(r, no, no, torch.zeros(4, 1), 0.5, 1.0), torch.tensor([[2.75], [3.5], [3.0]]))
    assert torch.allclose(lambda_returns(r, no, no, v, 0.5, 0.0), r + 0.5 * v[1:])
    # Terminated at step 1: no value after it; truncated at step 1: bootstrap from V(last frame) only.
    term = torch.tensor([[False], [True], [False]])
    out = lambda_returns(r, term, no, v, g, lam)
    assert out[1, 0] == 2.0 and torch.isclose(out[0, 0], torch.tensor(1 + g * ((1 - lam) * 20 + lam * 2.0)))
    out = lambda_returns(r, no, term, v, g, lam)
    assert out[1, 0] == 2 + g * 30
    with pytest.raises(ValueError, match="values must be"):
        lambda_returns(r, no, no, v[:3], g, lam)


def test_learns_a_pixel_task_and_beats_random():
    envs = gym.vector.SyncVectorEnv([Corridor for _ in range(8)])
    cfg = ActorCriticConfig(steps=8 * 12 * 80, horizon=12, lr=2e-3, entropy_coef=0.01, gamma=0.9, channels=(8, 16),
                            hidden=64)
    result = train_actor_critic(envs, cfg)
    assert result.steps == 8 * 12 * 80 and len(result.history) == 80
    assert np.mean([h["value_loss"] for h in result.history[-10:]]) < np.mean([h["value_loss"] for h in result.history[:10]])
    random_return = mean_return(RandomAgent(spaces.Discrete(3), 1, seed=0))
    trained = mean_return(ActorCriticAgent(result.net, spaces.Discrete(3), 1, seed=0))
    assert random_return < 0.3 and trained > 0.7, (random_return, trained)


def test_ppo_passes_learn_from_a_quarter_of_the_steps():
    """epochs > 1: PPO's clipped passes over each rollout; the same task from 20 rollouts instead of 80."""
    envs = gym.vector.SyncVectorEnv([Corridor for _ in range(8)])
    cfg = ActorCriticConfig(steps=8 * 12 * 20, horizon=12, lr=2e-3, entropy_coef=0.01, gamma=0.9, channels=(8, 16),
                            hidden=64, epochs=4, minibatches=4)
    result = train_actor_critic(envs, cfg)
    assert len(result.history) == 20 and all(np.isfinite(h["loss"]) for h in result.history)
    trained = mean_return(ActorCriticAgent(result.net, spaces.Discrete(3), 1, seed=0))
    assert trained > 0.7, trained
    with pytest.raises(ValueError, match="epochs and minibatches"):
        ActorCriticConfig(epochs=0)


def test_trains_in_imagination_then_acts_in_the_real_world(tmp_path):
    export = make_export(tmp_path / "export")  # 16x16, Discrete(5) like the probe world's pusher, k = 2
    envs = WorldModelVectorEnv(2, export, real_env="probe", context_frames=1, sampling_steps=1, max_episode_steps=3)
    cfg = ActorCriticConfig(steps=2 * 4 * 2, horizon=4, channels=(8,), hidden=16)
    torch.manual_seed(0)
    before = [p.detach().clone() for p in ActorCritic(ActorCriticNetConfig(5, (8,), hidden=16)).parameters()]
    result = train_actor_critic(envs, cfg)
    envs.close()
    assert len(result.history) == 2 and all(np.isfinite(list(h.values())).all() for h in result.history)
    assert len(result.episode_returns) == 4  # truncated at steps 3 and 7 (step 4 only resets), in both sub-envs
    assert any(not torch.equal(a, b) for a, b in zip(before, result.net.parameters()))
    path = tmp_path / "agent.safetensors"
    save_actor_critic(path, result.net, {"trained_in": "imagination"})
    real = HoldAction(make_real_env("probe", size=16), hold=envs.sim.k)
    agent = make_policy("actor_critic", real.action_space, 1, seed=3, weights=path)
    episode = roll_real(real, agent, 5, seed=0)
    assert len(episode.actions) == 5 and all(0 <= a < 5 for a in episode.actions)


def test_weights_round_trip_and_bad_files(tmp_path):
    torch.manual_seed(1)
    net = ActorCritic(ActorCriticNetConfig(17, (8, 16), hidden=32))
    with torch.no_grad():
        net.policy.weight.normal_()  # a policy far from uniform, so a wrong load shows
    path = tmp_path / "ac.safetensors"
    save_actor_critic(path, net, {"steps": 5})
    loaded, extra = load_actor_critic(path)
    obs = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    assert extra == {"steps": 5} and torch.equal(net(obs)[0], loaded(obs)[0]) and torch.equal(net(obs)[1], loaded(obs)[1])
    a = ActorCriticAgent(net, spaces.Discrete(17), 4, seed=0).act(obs.numpy())
    b = make_policy("actor_critic", spaces.Discrete(17), 4, seed=0, weights=path).act(obs.numpy())
    assert a.dtype == np.int64 and a.shape == (4,) and np.array_equal(a, b)
    with pytest.raises(ValueError, match="has 17 actions"):
        ActorCriticAgent(net, spaces.Discrete(5), 1)
    with pytest.raises(ValueError, match="Discrete"):
        ActorCriticAgent(net, spaces.Box(0, 1, (2,)), 1)
    with pytest.raises(ValueError, match="needs its saved weights"):
        make_policy("actor_critic", spaces.Discrete(17), 1)
    with pytest.raises(FileNotFoundError):
        load_actor_critic(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_actor_critic(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="does not hold actor-critic weights"):
        load_actor_critic(tmp_path / "other.safetensors")


def test_unimix_keeps_every_action_possible_and_travels_with_the_weights(tmp_path):
    """DreamerV3's unimix: the policy is (1 - u) softmax + u / A, in training, acting and after a reload."""
    torch.manual_seed(2)
    net = ActorCritic(ActorCriticNetConfig(17, (8,), hidden=16, unimix=0.3))
    with torch.no_grad():
        net.policy.bias.copy_(torch.arange(17.0) * 20)  # softmax puts all its mass on action 16
    obs = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    dist, _ = net.dist(obs)
    assert torch.allclose(dist.probs.sum(-1), torch.ones(3))
    assert torch.allclose(dist.probs[:, :16], torch.full((3, 16), 0.3 / 17), atol=1e-6)
    assert torch.allclose(dist.probs[:, 16], torch.full((3,), 0.7 + 0.3 / 17))
    plain = ActorCritic(ActorCriticNetConfig(17, (8,), hidden=16))
    plain.load_state_dict(net.state_dict())
    assert plain.dist(obs)[0].probs[:, :16].max() < 1e-6  # without unimix the other actions vanish
    path = tmp_path / "ac.safetensors"
    save_actor_critic(path, net)
    loaded = load_actor_critic(path)[0]
    assert loaded.cfg.unimix == 0.3
    agent = ActorCriticAgent(loaded, spaces.Discrete(17), 1, seed=0)
    acts = np.array([agent.act(obs[:1].numpy())[0] for _ in range(400)])
    assert 0.2 < (acts != 16).mean() < 0.36  # 16 of 17 uniform shares: 0.28
    with pytest.raises(ValueError, match="unimix"):
        ActorCriticNetConfig(17, unimix=1.0)


def test_real_vector_env_holds_actions():
    envs = real_vector_env("probe", 2, hold=3, size=16, max_episode_steps=7)
    obs, _ = envs.reset(seed=0)
    steps = 0
    while True:
        obs, _, term, trunc, _ = envs.step(np.zeros(2, np.int64))
        steps += 1
        if trunc.all():
            break
    assert steps == 3  # 7 frames: two whole holds of 3, then a cut one
    envs.close()


def test_imagination_vs_real_script_runs_end_to_end(tmp_path):
    """The comparison script on the tiny export and the probe world, with a tiny budget."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    export = make_export(tmp_path / "export")
    script = Path(__file__).resolve().parents[2] / "scripts" / "imagination_vs_real.py"
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(script), "--checkpoint", str(export), "--world", "probe", "--steps", "16",
                           "--num-envs", "2", "--horizon", "4", "--eval-seeds", "2", "--eval-frames", "6",
                           "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "results.json").read_text())
    assert set(report["agents"]) == {"random", "imagination", "real"} and report["k"] == 2
    for row in report["agents"].values():
        assert len(row["returns"]) == 2 and row["real_return"]["ci95"][0] <= row["real_return"]["mean"]
    assert report["agents"]["imagination"]["training"]["steps"] == 16
    agent = make_policy("actor_critic", spaces.Discrete(5), 1, weights=out / "imagination.safetensors")
    assert agent.act(np.zeros((1, 16, 16, 3), np.uint8)).shape == (1,)
    assert "AC in imagination" in done.stdout
    weights = (out / "imagination.safetensors").read_bytes()
    again = subprocess.run([sys.executable, str(script), "--checkpoint", str(export), "--world", "probe", "--rescore",
                            "--eval-seeds", "3", "--first-eval-seed", "500", "--eval-frames", "6", "--threads", "1",
                            "--out", str(out), "--docs-json", str(tmp_path / "docs.json")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    rescored = json.loads((out / "results.json").read_text())
    assert rescored["eval_seeds"] == [500, 501, 502] and (out / "imagination.safetensors").read_bytes() == weights
    assert all(len(row["returns"]) == 3 for row in rescored["agents"].values())
    assert rescored["agents"]["imagination"]["training"] == report["agents"]["imagination"]["training"]
    assert rescored["args"] == report["args"] and rescored["rescored_with"]["first_eval_seed"] == 500
    docs = json.loads((tmp_path / "docs.json").read_text())
    assert docs["imagination"]["episodes"] == 3 and docs["imagination"]["imagined_steps"] == 16
    missing = subprocess.run([sys.executable, str(script), "--checkpoint", str(export), "--world", "probe", "--rescore",
                              "--out", str(tmp_path / "none")], capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "no earlier run" in missing.stderr
