"""Record a policy acting in a real world into an episode store.

Several worlds step in parallel through a Gymnasium vector env with autoreset disabled, so every
episode is reset by us with its own seed: episode j of a store is always the world `seed + j`.
Finished episodes are written in episode order (an episode that ends early waits in memory for
the ones before it), so a killed collector that is run again resumes with the next new world
instead of repeating one, and the same seed gives the same store.

Writing (compression and file I/O) runs in a background thread while the worlds keep stepping. A
finished episode is handed over only once the previous one is committed, so at any moment at most
one finished episode is not yet in the store: a killed collector loses only the episodes still
running and at most that one. The progress bar counts committed episodes. Everything committed
before stays intact.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from tqdm.auto import tqdm

from worldsim.config import CollectConfig
from worldsim.data.store import EpisodeStore, StoreError
from worldsim.spaces import pack_action, space_to_json


@dataclass
class CollectResult:
    """What a collection run added."""

    path: str
    episodes: int  # episodes written by this run
    frames: int  # rows written by this run (one more per episode than steps)
    steps: int  # environment steps taken, including those of episodes abandoned at the end
    seconds: float
    total_episodes: int  # episodes in the store afterwards


@dataclass
class _Episode:
    """Rows of one episode in flight, in the store's row convention (row 0: reset, no action)."""

    obs: list[np.ndarray] = field(default_factory=list)
    action: list[np.ndarray] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)
    terminated: list[bool] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    state: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, obs, action, reward, terminated, truncated, state) -> None:
        self.obs.append(obs)
        self.action.append(action)
        self.reward.append(float(reward))
        self.terminated.append(bool(terminated))
        self.truncated.append(bool(truncated))
        for key, value in state.items():
            self.state.setdefault(key, []).append(value)

    def arrays(self) -> dict[str, Any]:
        """Keyword arguments of `EpisodeStore.append_episode`: T + 1 observations, T steps."""
        return dict(
            obs=np.stack(self.obs),
            action=np.stack(self.action[1:]) if len(self.action) > 1 else None,
            reward=np.asarray(self.reward[1:], dtype=np.float32),
            terminated=np.asarray(self.terminated[1:], dtype=bool),
            truncated=np.asarray(self.truncated[1:], dtype=bool),
            state={k: np.stack(v) for k, v in self.state.items()} or None,
        )


class _Writer:
    """Appends episodes to a store from a background thread, one episode in flight at a time."""

    def __init__(self, store: EpisodeStore) -> None:
        self.store = store
        self.queue: queue.Queue[dict | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.committed = 0  # episodes this writer has committed
        self.thread = threading.Thread(target=self._run, name="worldsim-collect-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (episode := self.queue.get()) is not None:
            if self.error is None:  # after a failure, drain without writing so put() never blocks
                try:
                    self.store.append_episode(**episode)
                    self.committed += 1
                except BaseException as e:
                    self.error = e
            self.queue.task_done()
        self.queue.task_done()

    def put(self, episode: dict) -> None:
        """Hand over one episode once the previous one is committed (so at most one finished episode is
        ever uncommitted); re-raises a write failure."""
        self.queue.join()
        if self.error is not None:
            raise self.error
        self.queue.put(episode)

    def close(self) -> None:
        """Write what is queued, stop the thread, and re-raise a write failure."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def env_kwargs(cfg: CollectConfig) -> dict[str, Any]:
    """Constructor arguments of the configured real world."""
    kwargs = {"size": cfg.env.size, **cfg.env.kwargs}
    if cfg.env.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.env.max_episode_steps
    return kwargs


def kwargs_differences(name: str, stored: dict[str, Any] | None, kwargs: dict[str, Any]) -> list[str]:
    """How the world's constructor arguments `kwargs` differ from those a store recorded (`stored`; None: a store
    that recorded none, not compared). An argument left out on either side counts as the world's default; the frame
    size is compared on its own."""
    import json

    from worldsim import envs

    if stored is None:
        return []
    defaults = envs.constructor_defaults(name)
    unset = object()
    out = []
    for key in sorted((set(stored) | set(kwargs)) - {"size"}):
        was, now = stored.get(key, defaults.get(key, unset)), kwargs.get(key, defaults.get(key, unset))
        if json.dumps(was, sort_keys=True, default=repr) != json.dumps(now, sort_keys=True, default=repr):
            field = "env.max_episode_steps" if key == "max_episode_steps" else f"env.kwargs.{key}"
            shown = lambda v: "unset" if v is unset else repr(v)  # noqa: E731
            out.append(f"it was collected with {field}={shown(was)}, not {shown(now)}")
    return out


def open_or_create(cfg: CollectConfig, env: gymnasium.Env) -> EpisodeStore:
    """Open `cfg.out` for appending if it exists (checking it records the same world), else create it."""
    from worldsim import envs

    env_id = envs.REAL_ENVS[cfg.env.name]
    kwargs = env_kwargs(cfg)
    frame_size = tuple(int(x) for x in env.observation_space.shape[:2])
    if Path(cfg.out).exists():
        store = EpisodeStore.open(cfg.out, mode="a")
        problems = []
        if store.env_id != env_id:
            problems.append(f"it records {store.env_id}, not {env_id}")
        if tuple(store.frame_size) != frame_size:
            problems.append(f"its frames are {tuple(store.frame_size)}, not {frame_size}")
        if store.action_space is not None and store.action_space != env.action_space:
            problems.append(f"its action space is {store.action_space}, not {env.action_space}")
        if store.env_id == env_id:
            problems += kwargs_differences(cfg.env.name, store.attrs.get("env_kwargs"), kwargs)
        if problems:
            store.close()  # releases the writer lock: the store stays usable in this process
            raise StoreError(f"cannot append to {cfg.out}: " + "; ".join(problems))
        return store
    fps = cfg.fps if cfg.fps is not None else float(env.metadata.get("render_fps", 15))
    return EpisodeStore.create(
        cfg.out,
        env_id=env_id,
        frame_size=frame_size,
        fps=fps,
        action_space=env.action_space,
        env_kwargs=kwargs,
        state_spec=env.unwrapped.state_spec() if hasattr(env.unwrapped, "state_spec") else None,
        source={"kind": "collect", "policy": cfg.policy, "seed": cfg.seed,
                "action_space": space_to_json(env.action_space)},
    )


def _row(values: dict[str, Any] | None, i: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(v[i]) for k, v in (values or {}).items() if not k.startswith("_")}


def collect(cfg: CollectConfig) -> CollectResult:
    """Roll `cfg.policy` in `cfg.env` until `cfg.episodes` new episodes are in the store at `cfg.out`."""
    from worldsim import envs
    from worldsim.agents import make_policy

    if cfg.episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {cfg.episodes}")
    if cfg.num_envs < 1:
        raise ValueError(f"num_envs must be at least 1, got {cfg.num_envs}")
    if cfg.vector not in ("async", "sync"):
        raise ValueError(f"vector must be 'async' or 'sync', got {cfg.vector!r}")
    kwargs = env_kwargs(cfg)
    num_envs = min(cfg.num_envs, cfg.episodes)
    probe_env = envs.make_real_env(cfg.env.name, **kwargs)  # spaces, fps and state spec
    try:
        try:
            agent = make_policy(cfg.policy, probe_env.action_space, num_envs, seed=cfg.seed, **cfg.policy_kwargs)
        except TypeError as e:  # an argument the policy does not take
            raise ValueError(f"policy {cfg.policy!r} does not take policy_kwargs {dict(cfg.policy_kwargs)}: {e}") from None
        store = open_or_create(cfg, probe_env)
    finally:
        probe_env.close()

    factory = partial(envs.make_real_env, cfg.env.name, **kwargs)
    vector_cls = AsyncVectorEnv if cfg.vector == "async" and num_envs > 1 else SyncVectorEnv
    try:
        vec = vector_cls([factory] * num_envs, autoreset_mode=AutoresetMode.DISABLED)
    except BaseException:
        store.close()
        raise
    space = vec.single_action_space

    first = store.num_episodes
    stop = first + cfg.episodes
    episode_of = np.arange(first, first + num_envs)  # global episode index running in each world
    next_episode = first + num_envs
    running = [_Episode() for _ in range(num_envs)]
    finished: dict[int, _Episode] = {}
    to_write = first
    steps, frames = 0, 0
    start = time.perf_counter()
    bar = tqdm(total=cfg.episodes, unit="ep", desc=f"collect {cfg.env.name}", disable=not cfg.progress)
    no_action = np.zeros_like(pack_action(space, space.sample()))
    writer = _Writer(store)
    try:
        seeds = [cfg.seed + int(j) for j in episode_of]
        obs, info = vec.reset(seed=seeds)
        agent.reset(np.ones(num_envs, dtype=bool), seeds)
        for i in range(num_envs):
            running[i].add(obs[i], no_action, 0.0, False, False, _row(info.get("state"), i))
        while to_write < stop:
            actions = agent.act(obs)
            obs, reward, terminated, truncated, info = vec.step(actions)
            steps += num_envs
            done = terminated | truncated
            for i in range(num_envs):
                action_i = actions[i] if not isinstance(actions, dict) else {k: v[i] for k, v in actions.items()}
                running[i].add(obs[i], pack_action(space, action_i), reward[i], terminated[i], truncated[i],
                               _row(info.get("state"), i))
                if done[i]:
                    if episode_of[i] < stop:
                        finished[int(episode_of[i])] = running[i]
                    running[i] = _Episode()
            while to_write in finished:  # write in episode order
                episode = finished.pop(to_write).arrays()
                writer.put(episode)
                frames += len(episode["obs"])
                to_write += 1
                bar.update(writer.committed - bar.n)  # committed episodes only: the one being written is not counted
                bar.set_postfix(frames=frames, fps=f"{frames / (time.perf_counter() - start):.0f}")
            if done.any() and to_write < stop:
                seeds = [None] * num_envs
                for i in np.flatnonzero(done):
                    episode_of[i] = next_episode
                    seeds[i] = cfg.seed + next_episode
                    next_episode += 1
                obs, info = vec.reset(seed=seeds, options={"reset_mask": done.copy()})
                agent.reset(done, seeds)
                for i in np.flatnonzero(done):
                    running[i].add(obs[i], no_action, 0.0, False, False, _row(info.get("state"), i))
    finally:
        try:
            writer.close()
        finally:
            bar.update(writer.committed - bar.n)
            bar.close()
            vec.close()
            store.close()
    return CollectResult(
        path=str(cfg.out),
        episodes=to_write - first,
        frames=frames,
        steps=steps,
        seconds=time.perf_counter() - start,
        total_episodes=store.num_episodes,
    )
