"""The simulator runner, and an off-the-shelf training loop on the vector env through Gymnasium's own wrappers."""

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers.vector import RecordEpisodeStatistics

import worldsim.sim  # noqa: F401  (registers worldsim/WorldModel-v0)
from worldsim.eval.simulated import SimRunner
from worldsim.sim.config import SimConfig


def test_runner_is_batched_and_seeded(tiny_export):
    runner = SimRunner(tiny_export, SimConfig(context_frames=2, sampling_steps=1), num_envs=2)
    rng = np.random.default_rng(0)
    contexts = [rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8) for _ in range(3)]  # 1 + (2 - 1) k rows
    ctx_actions = [[1, 1], [2, 2], [0, 0]]
    actions = [[1, 2, 3], [4, 0, 1], [2, 2, 2]]
    a = runner.rollout(contexts, ctx_actions, actions, seed=5)
    b = runner.rollout(contexts, ctx_actions, actions, seed=5)
    assert a.shape == (3, 6, 16, 16, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    # A batch of one gives the same frames as that episode inside a padded batch of two.
    c = runner.rollout(contexts[2:], ctx_actions[2:], actions[2:], seed=7)
    assert np.array_equal(c[0], a[2])
    runner.close()


def test_policy_gradient_on_the_vector_env_through_gymnasium(tiny_export):
    """REINFORCE on a linear policy, driven through gym.make_vec and a stock vector wrapper, unmodified."""
    envs = gym.make_vec("worldsim/WorldModel-v0", num_envs=2, vectorization_mode="vector_entry_point",
                        checkpoint=str(tiny_export), real_env="probe", context_frames=1, sampling_steps=1,
                        max_episode_steps=3)
    envs = RecordEpisodeStatistics(envs)
    torch.manual_seed(0)
    policy = torch.nn.Linear(16 * 16 * 3, 5)
    opt = torch.optim.SGD(policy.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in policy.parameters()]
    obs, _ = envs.reset(seed=0)
    episodes = 0
    for _ in range(2):
        logps, rewards, entropies = [], [], []
        for _ in range(3):
            dist = torch.distributions.Categorical(logits=policy(torch.from_numpy(obs).float().flatten(1) / 255))
            action = dist.sample()
            obs, reward, terminated, truncated, info = envs.step(action.numpy())
            logps.append(dist.log_prob(action))
            entropies.append(dist.entropy())
            rewards.append(torch.as_tensor(reward))
            episodes += int(np.sum(info.get("_episode", np.zeros(2, bool))))
        returns = torch.stack(rewards).flip(0).cumsum(0).flip(0)  # (T, N) reward-to-go
        # The untrained reward head may give constant rewards; the entropy bonus still moves the policy.
        loss = -(torch.stack(logps) * (returns - returns.mean())).mean() - 0.01 * torch.stack(entropies).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        obs, _ = envs.reset()
    assert episodes == 4  # truncated after 3 steps, twice, in both sub-envs: the wrapper saw each end
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    envs.close()


def test_eval_passes_its_context_budget_and_sampler_to_the_simulator(tiny_export):
    from worldsim.eval.config import EvalConfig
    from worldsim.eval.run import _runners

    runners = _runners(EvalConfig(checkpoint=str(tiny_export), context_budget=3, schemes=["long-range"], num_envs=1,
                                  sampler="heun", shift=3.0))
    assert runners["long-range"].sim.scheme.budget == 3
    assert (runners["long-range"].sim.config.sampler, runners["long-range"].sim.config.shift) == ("heun", 3.0)
    default = _runners(EvalConfig(checkpoint=str(tiny_export), schemes=["autoregressive"], num_envs=1))
    assert default["autoregressive"].sim.scheme.budget == 16  # an export that records no training window
