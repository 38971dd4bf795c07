"""Tiny episode stores and subprocess launchers for the trainer tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from gymnasium import spaces

from worldsim.data.store import EpisodeStore

REPO = Path(__file__).resolve().parents[2]


def make_store(path: Path, episodes: int = 6, steps: int = 24, size: int = 16, seed: int = 0, noise: int = 30,
               state: bool = False) -> Path:
    """A store of a square pushed by Discrete(3) actions (left, stay, right) on a noisy background.

    ``state=True`` records the square's column as state ``square_x`` (int64 (1,)): a push into a wall leaves it.

    ``noise=0`` draws a black background: two colours in all, a world with a palette.

    Rewards are 1 when the square touches the right edge; an episode terminates there.
    """
    rng = np.random.default_rng(seed)
    spec = {"square_x": ((1,), np.int64)} if state else None
    with EpisodeStore.create(path, env_id="test/square", frame_size=(size, size), fps=8.0,
                             action_space=spaces.Discrete(3), state_spec=spec) as store:
        for _ in range(episodes):
            x = int(rng.integers(0, size - 4))
            actions = rng.integers(0, 3, size=steps)
            obs = np.zeros((steps + 1, size, size, 3), dtype=np.uint8)
            reward = np.zeros(steps, dtype=np.float32)
            terminated = np.zeros(steps, dtype=bool)
            xs = np.zeros((steps + 1, 1), dtype=np.int64)
            for t in range(steps + 1):
                xs[t] = x
                obs[t] = rng.integers(0, noise, size=(size, size, 3), dtype=np.uint8) if noise else 0
                obs[t, size // 2 - 2: size // 2 + 2, x: x + 4] = (230, 60, 40)
                if t < steps:
                    x = int(np.clip(x + actions[t] - 1, 0, size - 4))
                    reward[t] = float(x == size - 4)
            terminated[-1] = bool(reward[-1])
            store.append_episode(obs, actions.reshape(-1, 1).astype(np.int64), reward, terminated,
                                 state={"square_x": xs} if state else None)
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worldsim_cmd(command: str, *overrides: str, nproc: int = 1) -> list[str]:
    """argv running `worldsim COMMAND overrides` in 1 process, or under torchrun with `nproc`."""
    if nproc == 1:
        return [sys.executable, "-m", "worldsim.cli", command, *overrides]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_port", str(free_port()), "-m", "worldsim.cli", command, *overrides]


def run_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    env["MASTER_PORT"] = str(free_port())
    return env


def run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), cwd=REPO, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result
