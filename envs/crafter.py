"""`CrafterEnv`: Crafter (Hafner 2021) behind the Gymnasium adapter contract.

`crafter.Env` speaks the old gym API (``reset() -> obs``, ``step -> (obs, reward, done, info)``)
and, without gym installed, describes its spaces with namedtuples. This adapter declares
Gymnasium spaces itself, splits ``done`` into ``terminated`` (the player died) and ``truncated``
(``max_episode_steps`` reached, Crafter's ``length``), and makes worlds reproducible:

Crafter seeds each episode's world with ``hash((seed, episode)) % (2**31 - 1)`` from the seed
given to its constructor and an episode counter. `CrafterEnv.reset` draws a fresh world seed from
the env's own seeded generator (`gymnasium.Env.np_random`) and restarts Crafter's counter, so
``reset(seed=s)`` always builds the same world and ``reset()`` continues a deterministic sequence
from the last seed. Everything random inside an episode (cows, zombies, sapling drops) then comes
from that world's generator, so the same actions replay the same episode. One Crafter bug stands
in the way: its world keeps each chunk's objects in a Python ``set``, iterated in memory-address
order, and picks which creature to despawn by index into that order, so the same seed and actions
diverged between processes. After every reset the adapter swaps those sets for insertion-ordered
ones (`_OrderedObjects`), which Crafter then keeps up to date itself.

``info`` holds Crafter's ``achievements`` and ``inventory`` dicts, ``discount``, and
``info["state"]``, fixed-shape arrays (`CrafterEnv.state_spec`):

- ``player_pos`` (2,) int64: the player's cell in the ``area`` grid.
- ``player_facing`` (2,) int64: unit direction the player faces.
- ``inventory`` (16,) int64: counts in `INVENTORY_KEYS` order (health, food, drink, energy first).
- ``achievements`` (22,) int64: counts in `ACHIEVEMENT_KEYS` order.
- ``sleeping`` () bool, ``daylight`` () float32 in [0, 1].

Crafter is an optional extra: it is imported only when a `CrafterEnv` is built.
"""

from __future__ import annotations

import collections
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldsim.envs.frame_size import LastFrameRender, parse_size

# Fixed orders copied from crafter/data.yaml (crafter 1.8), so state arrays line up across runs;
# `CrafterEnv` checks them against the installed crafter.
INVENTORY_KEYS = (
    "health", "food", "drink", "energy", "sapling", "wood", "stone", "coal", "iron", "diamond",
    "wood_pickaxe", "stone_pickaxe", "iron_pickaxe", "wood_sword", "stone_sword", "iron_sword",
)
ACHIEVEMENT_KEYS = (
    "collect_coal", "collect_diamond", "collect_drink", "collect_iron", "collect_sapling",
    "collect_stone", "collect_wood", "defeat_skeleton", "defeat_zombie", "eat_cow", "eat_plant",
    "make_iron_pickaxe", "make_iron_sword", "make_stone_pickaxe", "make_stone_sword",
    "make_wood_pickaxe", "make_wood_sword", "place_furnace", "place_plant", "place_stone",
    "place_table", "wake_up",
)
N_ACTIONS = 17


def _import_crafter():
    try:
        import crafter
    except ImportError as e:
        raise ImportError(
            "CrafterEnv needs the 'crafter' package: pip install 'worldsim[crafter]'"
        ) from e
    return crafter


class CrafterEnv(LastFrameRender, gym.Env):
    """Crafter with Gymnasium spaces, seeded worlds and ground-truth player state.

    Args:
        size: observation ``(H, W)`` or an int for square frames.
        area: world size in cells.
        view: visible grid ``(columns, rows)`` around the player, inventory rows included.
        max_episode_steps: Crafter's ``length``; reaching it truncates the episode.
        reward: pass Crafter's reward through (else always 0).
        render_mode: None or "rgb_array".
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        size: int | tuple[int, int] = 64,
        area: tuple[int, int] = (64, 64),
        view: tuple[int, int] = (9, 9),
        max_episode_steps: int = 10000,
        reward: bool = True,
        render_mode: str | None = None,
    ):
        crafter = _import_crafter()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        if tuple(crafter.constants.items) != INVENTORY_KEYS or tuple(
            sorted(crafter.constants.achievements)
        ) != ACHIEVEMENT_KEYS or len(crafter.constants.actions) != N_ACTIONS:
            raise ImportError("installed crafter has different items/achievements/actions than 1.8")
        self.size = parse_size(size)
        h, w = self.size
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        # Crafter's `size` is (width, height): it renders (W, H, 3) and transposes to (H, W, 3).
        # seed=0 only stops crafter touching the global numpy RNG; `reset` replaces it.
        self._env = crafter.Env(
            area=tuple(area), view=tuple(view), size=(w, h), reward=reward,
            length=self.max_episode_steps, seed=0,
        )
        self.action_names: tuple[str, ...] = tuple(crafter.constants.actions)
        self.observation_space = spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._frame: np.ndarray | None = None

    @staticmethod
    def state_spec() -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of every array in ``info["state"]``."""
        i64 = np.dtype(np.int64)
        return {
            "player_pos": ((2,), i64),
            "player_facing": ((2,), i64),
            "inventory": ((len(INVENTORY_KEYS),), i64),
            "achievements": ((len(ACHIEVEMENT_KEYS),), i64),
            "sleeping": ((), np.dtype(np.bool_)),
            "daylight": ((), np.dtype(np.float32)),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # Crafter's world seed is hash((self._seed, self._episode)); reset() increments _episode.
        self._env._seed = int(self.np_random.integers(0, 2**31 - 1))
        self._env._episode = 0
        self._frame = np.asarray(self._env.reset(), np.uint8)
        _order_chunks(self._env._world)
        player = self._env._player
        info = {
            "achievements": dict(player.achievements),
            "inventory": dict(player.inventory),
            "discount": 1.0,
            "state": self._state(),
        }
        return self._frame.copy(), info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._frame is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}; actions: {self.action_names}")
        obs, reward, done, info = self._env.step(int(action))
        self._frame = np.asarray(obs, np.uint8)
        terminated = bool(self._env._player.health <= 0)
        truncated = bool(done and not terminated)
        out = {
            "achievements": info["achievements"],
            "inventory": info["inventory"],
            "discount": info["discount"],
            "state": self._state(),
        }
        return self._frame.copy(), float(reward), terminated, truncated, out

    def _state(self) -> dict[str, np.ndarray]:
        player = self._env._player
        return {
            "player_pos": np.array(player.pos, np.int64).reshape(2),
            "player_facing": np.array(player.facing, np.int64).reshape(2),
            "inventory": np.array([player.inventory[k] for k in INVENTORY_KEYS], np.int64),
            "achievements": np.array([player.achievements[k] for k in ACHIEVEMENT_KEYS], np.int64),
            "sleeping": np.array(bool(player.sleeping)),
            "daylight": np.array(self._env._world.daylight, np.float32),
        }


class _OrderedObjects(dict):
    """The part of `set` that Crafter's world uses (add, remove, iteration, len), iterating in insertion order."""

    def add(self, obj: Any) -> None:
        self[obj] = None

    def remove(self, obj: Any) -> None:
        del self[obj]


def _order_chunks(world: Any) -> None:
    """Rebuild the world's chunk -> objects map with insertion-ordered sets, in the order objects were added."""
    chunks = collections.defaultdict(_OrderedObjects)
    for obj in world._objects:
        if obj is not None:
            chunks[world.chunk_key(obj.pos)].add(obj)
    world._chunks = chunks
