"""An exploring agent: long straight walks, bursts of interaction, and some random play.

Random play in Crafter mostly stands still on grass: each move lasts one step and 13 of the 17
actions change little, so recordings rarely show trees, water, stone, cows, zombies, collecting or
placing, and a world model learns none of them. This agent walks in one direction for a run of
steps (geometric, mean `mean_run`), which carries it across the map and into obstacles; on bumping
into something it faces it, so the burst of "do" that often follows collects wood or stone, hits a
cow or a zombie, or drinks; now and then it places or crafts. With probability `random_prob` a step
is a uniformly random action instead, so every action keeps appearing in the data.

With `loop_prob` > 0 (Crafter), that share of the walks come back: a run one way, then as many steps the
opposite way, so the data shows places left and seen again (what looking away and back asks a world model
to remember). At 0, the default, the draws are exactly those of an agent without the option.

In another Discrete world it is a random agent with action repeats (each drawn action held for a
run of steps). Each world has its own generator, reseeded by `reset(mask, seeds)`, so an episode's
actions depend on its seed alone.
"""

from __future__ import annotations

import gymnasium
import numpy as np

CRAFTER_MOVES = (1, 2, 3, 4)  # move_left, move_right, move_up, move_down
CRAFTER_OPPOSITE = {1: 2, 2: 1, 3: 4, 4: 3}
CRAFTER_DO = 5
CRAFTER_CRAFT = (7, 8, 9, 10, 11, 12, 14, 15)  # place stone/table/furnace/plant, make wood/stone pickaxe and sword
CRAFTER_ACTIONS = 17


class ExploreAgent:
    """Walk, interact, craft (Crafter) or hold random actions (any Discrete space); see the module docstring."""

    def __init__(self, action_space: gymnasium.Space, num_envs: int, seed: int | None = None,
                 mean_run: float = 6.0, do_prob: float = 0.5, craft_prob: float = 0.05, random_prob: float = 0.2,
                 loop_prob: float = 0.0):
        if not isinstance(action_space, gymnasium.spaces.Discrete):
            raise ValueError(f"the explore policy needs a Discrete action space, got {action_space}")
        for name, p in (("do_prob", do_prob), ("craft_prob", craft_prob), ("random_prob", random_prob),
                        ("loop_prob", loop_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        self.n = int(action_space.n)
        self.start = int(action_space.start)
        self.crafter = self.n == CRAFTER_ACTIONS
        self.num_envs = num_envs
        self.mean_run, self.do_prob, self.craft_prob, self.random_prob = mean_run, do_prob, craft_prob, random_prob
        self.loop_prob = loop_prob
        self._rngs = [np.random.default_rng(None if seed is None else seed + i) for i in range(num_envs)]
        self._plans: list[list[int]] = [[] for _ in range(num_envs)]

    def _plan(self, rng: np.random.Generator) -> list[int]:
        """The next few actions of one world (0-based, before `start` is added)."""
        run = int(rng.geometric(1.0 / self.mean_run))
        if not self.crafter:
            return [int(rng.integers(self.n))] * run
        move = int(rng.choice(CRAFTER_MOVES))
        plan = [move] * run
        if self.loop_prob > 0 and rng.random() < self.loop_prob:  # ... and back: the place left is seen again
            plan += [CRAFTER_OPPOSITE[move]] * run
        if rng.random() < self.do_prob:
            plan += [CRAFTER_DO] * int(rng.integers(1, 6))
        if rng.random() < self.craft_prob:
            plan.append(int(rng.choice(CRAFTER_CRAFT)))
        return plan

    def act(self, obs: np.ndarray) -> np.ndarray:
        if len(obs) != self.num_envs:
            raise ValueError(f"ExploreAgent acts for {self.num_envs} worlds, got {len(obs)} observations")
        out = np.empty(self.num_envs, dtype=np.int64)
        for i, rng in enumerate(self._rngs):
            if not self._plans[i]:
                self._plans[i] = self._plan(rng)
            planned = self._plans[i].pop(0)
            out[i] = self.start + (int(rng.integers(self.n)) if rng.random() < self.random_prob else planned)
        return out

    def reset(self, mask: np.ndarray, seeds: list[int | None] | None = None) -> None:
        for i in np.flatnonzero(mask):
            self._plans[i] = []
            if seeds is not None:
                self._rngs[i] = np.random.default_rng(seeds[i])
