"""A small CNN actor-critic on uint8 frames (CleanRL style), and the agent that acts with it.

The network sees one frame, uint8 (N, H, W, 3), and gives action logits and a state value from a
shared convolutional torso. Training (`agents.train_ac`) uses lambda-returns built from the
environment's reward and termination, so the same code trains in the real world or inside the
learned simulator (DIAMOND's "imagination": reward and termination come from learned heads).

Weights are saved as safetensors with the network's config in the file's metadata (no pickle):

    save_actor_critic("agent.safetensors", net)
    agent = ActorCriticAgent.load("agent.safetensors", num_envs=4, seed=0)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium
import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from worldsim.models.tagged import load_tagged, save_tagged, strided_convs

FORMAT = "worldsim-actor-critic-v1"  # written into the weights' metadata; checked on load


@dataclass(frozen=True)
class ActorCriticNetConfig:
    """Shape of the network (stored with the weights)."""

    num_actions: int  # size of the Discrete action space
    channels: tuple[int, ...] = (16, 32, 32)  # conv widths; each conv halves the frame (stride 2)
    pooled: int = 4  # the torso's output is average-pooled to pooled x pooled, so any frame size works
    hidden: int = 256  # width of the shared layer in front of the two heads
    unimix: float = 0.0  # the policy is (1 - unimix) softmax(logits) + unimix / num_actions (DreamerV3: 0.01)

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_actions", int(self.num_actions))  # a numpy int (space.n) would not save as JSON
        if self.num_actions < 1 or not self.channels or self.pooled < 1 or self.hidden < 1:
            raise ValueError(f"invalid actor-critic network config {self}")
        if not 0.0 <= self.unimix < 1.0:
            raise ValueError(f"unimix must lie in [0, 1), got {self.unimix}")


class ActorCritic(nn.Module):
    """Shared conv torso -> (policy logits, value)."""

    def __init__(self, cfg: ActorCriticNetConfig):
        super().__init__()
        self.cfg = cfg
        layers, c_in = strided_convs(3, cfg.channels)
        layers += [nn.AdaptiveAvgPool2d(cfg.pooled), nn.Flatten(),
                   nn.Linear(c_in * cfg.pooled**2, cfg.hidden), nn.SiLU()]
        self.torso = nn.Sequential(*layers)
        self.policy = nn.Linear(cfg.hidden, cfg.num_actions)
        self.value = nn.Linear(cfg.hidden, 1)
        # CleanRL's init: a near-uniform first policy and small first values.
        nn.init.orthogonal_(self.policy.weight, 0.01)
        nn.init.zeros_(self.policy.bias)
        nn.init.orthogonal_(self.value.weight, 1.0)
        nn.init.zeros_(self.value.bias)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """obs uint8 (N, H, W, 3) -> logits float (N, A), value float (N,)."""
        if obs.ndim != 4 or obs.shape[-1] != 3:
            raise ValueError(f"expected frames (N, H, W, 3), got shape {tuple(obs.shape)}")
        x = rearrange(obs.float() / 255.0, "n h w c -> n c h w")  # [0, 1]
        h = self.torso(x)  # (N, hidden)
        return self.policy(h), self.value(h).squeeze(-1)

    def probs(self, logits: Tensor) -> Tensor:
        """The policy's action probabilities (N, A) for `logits` (N, A): the softmax mixed with the uniform."""
        probs = logits.softmax(-1)
        u = self.cfg.unimix
        return probs if u == 0 else (1 - u) * probs + u / probs.shape[-1]

    def dist(self, obs: Tensor) -> tuple[torch.distributions.Categorical, Tensor]:
        """The policy's action distribution over a batch (N,) and the values (N,)."""
        logits, value = self(obs)
        if self.cfg.unimix == 0:
            return torch.distributions.Categorical(logits=logits), value
        return torch.distributions.Categorical(probs=self.probs(logits)), value


def num_discrete_actions(space: gymnasium.Space) -> int:
    """The size of a Discrete space starting at 0 (the only kind this agent acts in)."""
    if not isinstance(space, gymnasium.spaces.Discrete) or int(space.start) != 0:
        raise ValueError(f"the actor-critic acts in Discrete(n) action spaces starting at 0, got {space}")
    return int(space.n)


def save_actor_critic(path: str | os.PathLike, net: ActorCritic, extra: dict[str, Any] | None = None) -> None:
    """Write `net`'s weights as safetensors; its config (and JSON-able `extra`) go into the metadata."""
    save_tagged(path, net, FORMAT, asdict(net.cfg), extra)


def load_actor_critic(path: str | os.PathLike) -> tuple[ActorCritic, dict[str, Any]]:
    """Read a network written by `save_actor_critic`; returns (net in eval mode, extra metadata).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not actor-critic weights (other format, missing or mismatched tensors).
    """
    def build(raw: dict[str, Any]) -> ActorCritic:
        return ActorCritic(ActorCriticNetConfig(**{**raw, "channels": tuple(raw["channels"])}))

    return load_tagged(path, FORMAT, "actor-critic weights", build)


class ActorCriticAgent:
    """The `Agent` protocol over a trained `ActorCritic`.

    Actions are sampled from the policy (or its argmax with `greedy=True`). Each world has its own
    numpy generator, reseeded by `reset(mask, seeds)`, so an episode's actions depend only on its
    seed and observations.
    """

    def __init__(self, net: ActorCritic, action_space: gymnasium.Space, num_envs: int, seed: int | None = None,
                 greedy: bool = False):
        n = num_discrete_actions(action_space)
        if n != net.cfg.num_actions:
            raise ValueError(f"the network has {net.cfg.num_actions} actions, the action space {action_space} has {n}")
        self.net = net.eval()
        self.action_space = action_space
        self.num_envs = num_envs
        self.greedy = greedy
        self._rngs = [np.random.default_rng(None if seed is None else seed + i) for i in range(num_envs)]

    @classmethod
    def load(cls, path: str | os.PathLike, action_space: gymnasium.Space, num_envs: int, seed: int | None = None,
             greedy: bool = False) -> ActorCriticAgent:
        """An agent acting with the weights saved at `path`."""
        return cls(load_actor_critic(path)[0], action_space, num_envs, seed, greedy)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """obs uint8 (N, H, W, 3) -> actions int64 (N,)."""
        if len(obs) != self.num_envs:
            raise ValueError(f"ActorCriticAgent acts for {self.num_envs} worlds, got {len(obs)} observations")
        logits, _ = self.net(torch.as_tensor(np.asarray(obs)))
        if self.greedy:
            return logits.argmax(-1).numpy().astype(np.int64)
        probs = self.net.probs(logits.double()).numpy()  # (N, A); float64 so each row sums to 1 for numpy
        return np.array([rng.choice(len(p), p=p / p.sum()) for rng, p in zip(self._rngs, probs)], np.int64)

    def reset(self, mask: np.ndarray, seeds: list[int | None] | None = None) -> None:
        if seeds is None:
            return
        for i in np.flatnonzero(mask):
            self._rngs[i] = np.random.default_rng(seeds[i])


def make_actor_critic_agent(action_space: gymnasium.Space, num_envs: int, seed: int | None = None,
                            weights: str | os.PathLike | None = None, greedy: bool = False) -> ActorCriticAgent:
    """`agents.make_policy("actor_critic", ..., weights=PATH)`: the agent saved at `weights`."""
    if weights is None:
        raise ValueError("the actor_critic policy needs its saved weights: make_policy('actor_critic', ..., "
                         "weights='agent.safetensors') (train one with scripts/imagination_vs_real.py)")
    return ActorCriticAgent.load(weights, action_space, num_envs, seed, greedy)
