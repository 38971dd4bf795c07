"""Where a reset's context comes from: a dataset episode, given frames (or one image), or a live real world.

`reset_context` turns a reset's ``options`` (plus the env's defaults) into context frames with the
packed actions that led to them. All choices (episode, start row, the real world's seed) come from
the env's seeded numpy generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.spaces import pack_action, packed_dim, space_to_json

OPTION_KEYS = ("dataset", "frames", "actions", "real_env")


@dataclass
class Context:
    """Context frames for `Simulator.start` and what they came from."""

    frames: np.ndarray  # uint8 (T, H, W, 3)
    actions: np.ndarray | None  # packed (T, D): row t led to frame t; None: unknown
    has_action: np.ndarray | None  # bool (T,)
    info: dict[str, Any]  # the source, for the reset's info


class ContextSource:
    """Resolves reset options against the env's defaults; keeps opened stores and made worlds."""

    def __init__(self, frame_size: tuple[int, int], action_space: gym.Space, context_rows: int,
                 dataset: str | None = None, real_env: str | gym.Env | None = None) -> None:
        if isinstance(real_env, str):  # named: a typo is refused now, not at the first reset that needs the world
            from worldsim.envs import REAL_ENVS

            if real_env not in REAL_ENVS:
                raise ValueError(f"real_env={real_env!r} is not a real world; known: {', '.join(REAL_ENVS)}")
        self.frame_size, self.action_space, self.context_rows = frame_size, action_space, context_rows
        self.default_dataset, self.default_real_env = dataset, real_env
        self._stores: dict[str, Any] = {}
        self._worlds: dict[str, gym.Env] = {}

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        for world in self._worlds.values():
            world.close()
        self._stores, self._worlds = {}, {}

    def get(self, options: dict[str, Any] | None, rng: np.random.Generator) -> Context:
        options = dict(options or {})
        unknown = sorted(set(options) - set(OPTION_KEYS) - {"reset_mask"})
        if unknown:
            raise ValueError(f"unknown reset options {unknown}; known: {', '.join(OPTION_KEYS)}")
        if "frames" in options:
            return self._from_frames(options["frames"], options.get("actions"))
        if options.get("real_env") is not None:
            return self._from_world(options["real_env"], rng)
        if options.get("dataset") is not None:
            return self._from_dataset(options["dataset"], rng)
        if self.default_dataset is not None:
            return self._from_dataset(self.default_dataset, rng)
        if self.default_real_env is not None:
            return self._from_world(self.default_real_env, rng)
        raise ValueError("no context to reset from: pass dataset=STORE or real_env=NAME when making the env, or "
                         "reset(options={'dataset': STORE} | {'frames': uint8 (T, H, W, 3)} | {'real_env': 'crafter'})")

    def _from_frames(self, frames: Any, actions: Any) -> Context:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        packed = None
        if actions is not None:
            actions = list(actions)
            if len(actions) != frames.shape[0] - 1:
                raise ValueError(f"options['actions'] must hold T - 1 = {frames.shape[0] - 1} actions (action i led to "
                                 f"frame i + 1), got {len(actions)}")
            d = packed_dim(self.action_space)
            packed = np.zeros((frames.shape[0], d), dtype=np.float32)
            for i, a in enumerate(actions):
                packed[i + 1] = pack_action(self.action_space, a)
            has = np.arange(frames.shape[0]) > 0
            return Context(frames, packed, has, {"source": "frames"})
        return Context(frames, None, None, {"source": "frames"})

    def _from_world(self, world: str | gym.Env, rng: np.random.Generator) -> Context:
        if isinstance(world, str):
            if world not in self._worlds:
                from worldsim.envs import make_real_env

                h, w = self.frame_size
                if h != w:
                    raise ValueError(f"real worlds render square frames; the model's frames are {h}x{w}")
                self._worlds[world] = make_real_env(world, size=h)
            world = self._worlds[world]
        seed = int(rng.integers(2**31 - 1))
        obs, _ = world.reset(seed=seed)
        return Context(np.asarray(obs)[None], None, None, {"source": "real_env", "real_seed": seed})

    def _from_dataset(self, path: str, rng: np.random.Generator) -> Context:
        from worldsim.data.store import EpisodeStore

        path = str(path)
        if path not in self._stores:
            store = EpisodeStore.open(path, mode="r")
            if tuple(store.frame_size) != tuple(self.frame_size):
                raise ValueError(f"dataset {path} has {store.frame_size[0]}x{store.frame_size[1]} frames, the model "
                                 f"{self.frame_size[0]}x{self.frame_size[1]}")
            space = store.action_space
            if space is not None and space_to_json(space) != space_to_json(self.action_space):
                raise ValueError(f"dataset {path} records actions in {space}, the model takes {self.action_space}")
            if store.num_episodes == 0:
                raise ValueError(f"dataset {path} holds no episodes")
            self._stores[path] = store
        store = self._stores[path]
        episode = int(rng.integers(store.num_episodes))
        rows = store.episode_slice(episode)
        length = rows.stop - rows.start
        used = min(self.context_rows, length)
        start = rows.start + int(rng.integers(length - used + 1))
        keys = ["obs", "has_action"] + (["action"] if "action" in store.keys() else [])
        data = store.read_rows(keys, start, start + used)
        actions = data.get("action")
        has = data["has_action"].astype(bool) if actions is not None else None
        return Context(data["obs"], actions, has, {"source": "dataset", "episode": episode, "start_row": start - rows.start})
