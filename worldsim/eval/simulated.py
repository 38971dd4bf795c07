"""Driving the learned simulator (`worldsim.sim`) from given context with given actions, in batches."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from worldsim.sim.config import SimConfig


class SimRunner:
    """Open-loop rollouts of the learned simulator, batched over up to `num_envs` episodes.

    `context_rows` real frames start each rollout (the simulator's ``1 + (context_frames - 1) k``);
    then one action per latent step, each giving `k` frames.
    """

    def __init__(self, checkpoint: str | os.PathLike, config: SimConfig | None = None, num_envs: int = 4) -> None:
        from worldsim.export import read_export_config
        from worldsim.models.latents import num_real_frames
        from worldsim.pretrained import resolve_checkpoint
        from worldsim.sim.simulator import Simulator
        from worldsim.sim.vector_env import WorldModelVectorEnv

        self.config = config or SimConfig()
        self.num_envs = num_envs
        checkpoint = resolve_checkpoint(checkpoint)
        if read_export_config(checkpoint).get("action_space") is None:  # continues footage only: no env
            self.env, self.sim = None, Simulator(checkpoint, self.config)
        else:
            self.env = WorldModelVectorEnv(num_envs, checkpoint, config=self.config)
            self.sim = self.env.sim
        self.k = self.sim.k
        self.frame_size = self.sim.frame_size
        self.action_space = self.sim.action_space  # None for an action-free model
        self.context_rows = num_real_frames(self.config.context_frames, self.k)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()

    def continue_free(self, contexts: list[np.ndarray], steps: int, seed: int = 0) -> np.ndarray:
        """Continue every clip from its context frames with no actions known (imported footage).

        Each latent step is sampled with the null action (an action-free model needs none); episode i
        draws its noise from a generator seeded ``seed + i``. contexts: N uint8 (c, H, W, 3), the newest
        `context_rows` used. Returns uint8 (N, steps k, H, W, 3): the frames after the context.
        """
        out = [self.sim.continue_free(contexts[b0: b0 + self.num_envs], steps, seed=seed + b0)
               for b0 in range(0, len(contexts), self.num_envs)]
        return np.concatenate(out) if out else np.zeros((0, steps * self.k, *self.frame_size, 3), np.uint8)

    def rollout(self, contexts: list[np.ndarray], context_actions: list[list[Any]], actions: list[list[Any]],
                seed: int = 0) -> np.ndarray:
        """Simulate every episode from its context with its actions.

        Args:
            contexts: N uint8 arrays (c, H, W, 3), c = `context_rows` (more are cut to the newest).
            context_actions: N lists of the c - 1 actions between the context frames.
            actions: N lists of m actions, one per latent step (all of the same length m).
            seed: sub-env i of batch b is seeded with ``seed + b * num_envs + i``.
        Returns:
            uint8 (N, m k, H, W, 3): the frames after the context.
        """
        if self.env is None:
            raise ValueError("this model is action-free: it continues footage (continue_free), it takes no actions")
        n = len(contexts)
        if not (len(context_actions) == len(actions) == n):
            raise ValueError(f"got {n} contexts, {len(context_actions)} context action lists and {len(actions)} action lists")
        m = len(actions[0]) if n else 0
        if any(len(a) != m for a in actions):
            raise ValueError("every episode must have the same number of actions")
        out = []
        for b0 in range(0, n, self.num_envs):
            idx = list(range(b0, min(b0 + self.num_envs, n)))
            idx += [idx[0]] * (self.num_envs - len(idx))  # pad the last batch; padded results are dropped
            for i, j in enumerate(idx):
                c = self.context_rows
                frames, acts = np.asarray(contexts[j])[-c:], list(context_actions[j])[len(context_actions[j]) - (min(c, len(contexts[j])) - 1):]
                mask = np.zeros(self.num_envs, bool)
                mask[i] = True
                seeds = [None] * self.num_envs
                seeds[i] = seed + b0 + i
                self.env.reset(seed=seeds, options={"frames": frames, "actions": acts, "reset_mask": mask})
            frames_b = []
            for t in range(m):
                batch = np.asarray([actions[j][t] for j in idx])
                *_, info = self.env.step(batch)
                frames_b.append(info["frames"])  # (num_envs, k, H, W, 3)
            stacked = np.stack(frames_b, axis=1).reshape(self.num_envs, m * self.k, *frames_b[0].shape[2:])
            out.append(stacked[: min(self.num_envs, n - b0)])
        return np.concatenate(out) if out else np.zeros((0, m * self.k, *self.frame_size, 3), np.uint8)
