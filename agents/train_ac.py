"""Train `ActorCritic` with lambda-returns on any Gymnasium vector env: a real world or the learned simulator.

One loop for both, so "trained in imagination" and "trained in the real world" differ only in the
env (DIAMOND, Alonso et al. 2024, section 2.3: the actor-critic learns from imagined trajectories
whose rewards and terminations come from the world model's heads):

    envs = WorldModelVectorEnv(8, EXPORT, dataset=STORE, max_episode_steps=15)   # imagination
    envs = real_vector_env("crafter", 8, hold=k)                                 # the real world
    result = train_actor_critic(envs, ActorCriticConfig(steps=20_000))

Each update collects `horizon` steps from every sub-env (envs persist between updates, CleanRL
style), then minimises

    L = -E[log pi(a_t|s_t) * A_t] + c_v E[(V(s_t) - G_t)^2] - c_H E[H(pi(.|s_t))]

with lambda-returns G_t (`lambda_returns`) and advantages A_t = G_t - V(s_t) (normalised per batch
unless `normalize_advantages=False`): one gradient step per rollout (A2C). With `epochs` > 1 each
rollout is reused for `epochs` passes of `minibatches` steps under PPO's clipped objective
(Schulman et al. 2017), `-E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)]`, rho the new policy's
probability of the action over the collecting one's: many more updates per collected step, which
is what imagination (whose steps cost a DiT forward each) needs. Autoreset must be NEXT_STEP
(Gymnasium's default and the simulator's): the step after an episode ends only resets, so it is
masked out of the loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from worldsim.agents.actor_critic import ActorCritic, ActorCriticNetConfig, num_discrete_actions


@dataclass
class ActorCriticConfig:
    """Hyper-parameters of `train_actor_critic`."""

    steps: int = 20_000  # agent steps in total, summed over sub-envs (one step = one env.step of one sub-env)
    horizon: int = 16  # steps per sub-env between updates (DIAMOND imagines 15 ahead)
    gamma: float = 0.985  # discount per step (DIAMOND's value)
    lam: float = 0.95  # lambda of the lambda-returns
    lr: float = 3e-4  # Adam learning rate
    entropy_coef: float = 0.001  # entropy bonus weight (DIAMOND's value)
    value_coef: float = 0.5  # value loss weight
    max_grad_norm: float = 1.0  # gradient clipping
    normalize_advantages: bool = True  # scale each batch's advantages to unit std (CleanRL), so sparse small rewards still move the policy
    seed: int = 0  # network init, action sampling and the envs' first reset
    epochs: int = 1  # passes over each rollout: 1 is A2C (one step), > 1 PPO's clipped objective
    minibatches: int = 1  # gradient steps per pass (PPO); the rollout's valid steps are split evenly
    clip: float = 0.2  # PPO's ratio clip epsilon
    channels: tuple[int, ...] = (16, 32, 32)  # network conv widths (see ActorCriticNetConfig)
    hidden: int = 256  # network hidden width
    unimix: float = 0.0  # share of the uniform policy mixed into the network's (ActorCriticNetConfig.unimix)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.horizon < 1:
            raise ValueError(f"steps and horizon must be >= 1, got steps={self.steps}, horizon={self.horizon}")
        if self.epochs < 1 or self.minibatches < 1 or not 0 < self.clip < 1:
            raise ValueError(f"epochs and minibatches must be >= 1 and clip in (0, 1), got epochs={self.epochs}, "
                             f"minibatches={self.minibatches}, clip={self.clip}")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError(f"gamma and lam must lie in [0, 1], got gamma={self.gamma}, lam={self.lam}")


@dataclass
class TrainResult:
    """What `train_actor_critic` returns."""

    net: ActorCritic
    history: list[dict[str, float]]  # one row per update: step, loss terms, mean reward per step
    episode_returns: list[float]  # returns of the episodes that ended during training, in order
    steps: int  # agent steps taken (whole updates; includes the steps that only reset a sub-env)
    seconds: float  # wall time of the training loop


def lambda_returns(reward: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor, values: torch.Tensor,
                   gamma: float, lam: float) -> torch.Tensor:
    """TD(lambda) returns of a rollout collected under NEXT_STEP autoreset.

    Args:
        reward, terminated, truncated: (T, N): the outcome of step t (bool flags).
        values: (T + 1, N): V of the observation before step t; row T is V of the last observation.
            After a step that ended an episode the next observation is that episode's last frame, so a
            truncated episode is bootstrapped from V(last frame) and a terminated one from nothing.
    Returns:
        G (T, N): G_t = r_t + gamma (1 - term_t) [(1 - lam) V_{t+1} + lam G_{t+1}], with the recursion cut
        (G_{t+1} replaced by V_{t+1}) where an episode ended at t; G_T = V_T.
    """
    T = reward.shape[0]
    if values.shape[0] != T + 1 or terminated.shape != reward.shape or truncated.shape != reward.shape:
        raise ValueError(f"lambda_returns: reward {tuple(reward.shape)}, terminated {tuple(terminated.shape)}, "
                         f"truncated {tuple(truncated.shape)} must match and values must be (T + 1, N), got "
                         f"{tuple(values.shape)}")
    out = torch.empty_like(reward, dtype=values.dtype)
    nxt = values[T]
    for t in reversed(range(T)):
        ended = (terminated[t] | truncated[t]).to(values.dtype)
        follow = ended * values[t + 1] + (1 - ended) * ((1 - lam) * values[t + 1] + lam * nxt)
        out[t] = reward[t] + gamma * (1 - terminated[t].to(values.dtype)) * follow
        nxt = out[t]
    return out


def train_actor_critic(envs: gym.vector.VectorEnv, cfg: ActorCriticConfig, net: ActorCritic | None = None,
                       log: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train an actor-critic on `envs` for `cfg.steps` agent steps (rounded up to whole updates).

    `envs` has frames uint8 (H, W, 3) as observations, a Discrete action space and NEXT_STEP autoreset.
    `log` (optional) gets each update's row of the history.
    """
    mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if mode != AutoresetMode.NEXT_STEP:
        raise ValueError(f"train_actor_critic needs NEXT_STEP autoreset, the env uses {mode}")
    n_env = envs.num_envs
    n_act = num_discrete_actions(envs.single_action_space)
    torch.manual_seed(cfg.seed)
    net = net or ActorCritic(ActorCriticNetConfig(n_act, cfg.channels, hidden=cfg.hidden, unimix=cfg.unimix))
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-5)
    gen = torch.Generator().manual_seed(cfg.seed)

    obs, _ = envs.reset(seed=cfg.seed)
    autoreset = np.zeros(n_env, bool)  # the next step of this sub-env only resets it
    running = np.zeros(n_env)  # return of each sub-env's current episode
    history, episode_returns = [], []
    updates = -(-cfg.steps // (cfg.horizon * n_env))
    ppo = cfg.epochs > 1 or cfg.minibatches > 1
    t0 = time.perf_counter()
    for update in range(updates):
        logps, ents, values, rewards, terms, truncs, valid = [], [], [], [], [], [], []
        seen, taken = [], []  # PPO: the rollout's observations and actions, replayed in its passes
        for _ in range(cfg.horizon):
            with torch.set_grad_enabled(not ppo):
                dist, value = net.dist(torch.as_tensor(obs))
            action = torch.multinomial(dist.probs.detach(), 1, generator=gen).squeeze(-1)  # (N,)
            if ppo:
                seen.append(torch.as_tensor(obs))
                taken.append(action)
            obs, reward, term, trunc, _ = envs.step(action.numpy())
            logps.append(dist.log_prob(action))
            ents.append(dist.entropy())
            values.append(value)
            valid.append(torch.as_tensor(~autoreset))
            rewards.append(torch.as_tensor(reward, dtype=torch.float32))
            terms.append(torch.as_tensor(term, dtype=torch.bool))
            truncs.append(torch.as_tensor(trunc, dtype=torch.bool))
            running += np.where(autoreset, 0.0, reward)
            ended = np.asarray(term) | np.asarray(trunc)
            episode_returns += running[ended].tolist()
            running[ended] = 0.0
            autoreset = ended
        with torch.no_grad():
            _, last_value = net(torch.as_tensor(obs))
        V = torch.stack(values)  # (T, N)
        R, term_t, trunc_t = torch.stack(rewards), torch.stack(terms), torch.stack(truncs)  # (T, N)
        mask = torch.stack(valid).float()  # (T, N): 0 where the step only reset its sub-env
        G = lambda_returns(R, term_t, trunc_t, torch.cat([V.detach(), last_value[None]]), cfg.gamma, cfg.lam)
        adv = G - V.detach()  # (T, N)
        n_valid = mask.sum().clamp_min(1)
        if cfg.normalize_advantages:
            mean = (adv * mask).sum() / n_valid
            std = (((adv - mean) ** 2 * mask).sum() / n_valid).sqrt()
            adv = (adv - mean) / (std + 1e-8)
        if ppo:
            keep = mask.flatten().bool()
            loss, policy_loss, value_loss, entropy = _ppo_passes(
                net, opt, cfg, torch.stack(seen).flatten(0, 1)[keep], torch.stack(taken).flatten()[keep],
                torch.stack(logps).flatten()[keep], adv.flatten()[keep], G.flatten()[keep], gen)
        else:
            policy_loss = -(torch.stack(logps) * adv * mask).sum() / n_valid
            value_loss = ((V - G) ** 2 * mask).sum() / n_valid
            entropy = (torch.stack(ents) * mask).sum() / n_valid
            loss = _step(net, opt, cfg, policy_loss, value_loss, entropy)
            policy_loss, value_loss, entropy = (x.detach() for x in (policy_loss, value_loss, entropy))
        row = {"update": update + 1, "step": (update + 1) * cfg.horizon * n_env, "loss": float(loss),
               "policy_loss": float(policy_loss), "value_loss": float(value_loss), "entropy": float(entropy),
               "reward_per_step": float((R * mask).sum() / n_valid)}
        history.append(row)
        if log is not None:
            log(row)
    return TrainResult(net.eval(), history, episode_returns, updates * cfg.horizon * n_env,
                       time.perf_counter() - t0)


def _ppo_passes(net: ActorCritic, opt: torch.optim.Optimizer, cfg: ActorCriticConfig, obs: torch.Tensor,
                actions: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, returns: torch.Tensor,
                gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """`cfg.epochs` passes of `cfg.minibatches` clipped-objective steps over one rollout's valid steps.

    Returns the last pass's mean (loss, policy loss, value loss, entropy), detached.
    """
    n = len(actions)
    sums = torch.zeros(4)
    if n == 0:  # every step of the rollout only reset its sub-env: nothing to learn from
        return tuple(sums)
    for _ in range(cfg.epochs):
        sums.zero_()
        order = torch.randperm(n, generator=gen)
        for part in order.chunk(min(cfg.minibatches, n)):
            dist, value = net.dist(obs[part])
            ratio = (dist.log_prob(actions[part]) - old_logp[part]).exp()
            a = adv[part]
            policy_loss = -torch.min(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a).mean()
            value_loss = (value - returns[part]).pow(2).mean()
            entropy = dist.entropy().mean()
            loss = _step(net, opt, cfg, policy_loss, value_loss, entropy)
            sums += torch.stack([loss, policy_loss.detach(), value_loss.detach(), entropy.detach()]) * len(part) / n
    return tuple(sums)


def _step(net: ActorCritic, opt: torch.optim.Optimizer, cfg: ActorCriticConfig, policy_loss: torch.Tensor,
          value_loss: torch.Tensor, entropy: torch.Tensor) -> torch.Tensor:
    """One optimizer step on the weighted loss (gradients clipped); returns the loss, detached."""
    loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
    opt.step()
    return loss.detach()


class HoldAction(gym.Wrapper):
    """Holds each action for `hold` frames and returns the last frame, summing the rewards.

    The learned simulator's step is one latent frame = k real frames with the action held; wrapping
    the real world the same way gives both the same decisions per frame (stops early at an episode end).
    """

    def __init__(self, env: gym.Env, hold: int):
        super().__init__(env)
        if hold < 1:
            raise ValueError(f"hold must be >= 1, got {hold}")
        self.hold = hold

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        total = 0.0
        for _ in range(self.hold):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


def real_vector_env(name: str, num_envs: int, hold: int = 1, **kwargs: Any) -> gym.vector.SyncVectorEnv:
    """`num_envs` copies of real world `name` (envs.make_real_env kwargs) with actions held `hold` frames."""
    from worldsim.envs import make_real_env

    return gym.vector.SyncVectorEnv([lambda: HoldAction(make_real_env(name, **kwargs), hold)
                                     for _ in range(num_envs)], autoreset_mode=AutoresetMode.NEXT_STEP)
