"""A synthetic action-controlled latent world: the smallest task on which a DiT must follow actions.

A 2x2 square on a SIZE x SIZE, CHANNELS-channel latent grid moves one cell per frame (wrapping) as
a Discrete(5) action says (stay, up, down, left, right). The next frame is a deterministic function
of the last one and the action, so a sampled frame has a ground truth and a model that ignores
actions cannot do better than guessing the move. Used to choose the objective
(`scripts/compare_objectives.py`) and to test that training learns action conditioning.
"""

from __future__ import annotations

import torch

SIZE, CHANNELS = 8, 4
MOVES = torch.tensor([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])
PATTERN = torch.tensor([2.0, -2.0, 1.0, -1.0])  # per-channel value of the square


def render(pos: torch.Tensor) -> torch.Tensor:
    """Square positions (B, 2) -> latent frames (B, CHANNELS, SIZE, SIZE), zero-mean per channel."""
    batch = pos.shape[0]
    grid = torch.zeros(batch, SIZE, SIZE)
    for dr in (0, 1):
        for dc in (0, 1):
            grid[torch.arange(batch), (pos[:, 0] + dr) % SIZE, (pos[:, 1] + dc) % SIZE] = 1.0
    return grid[:, None] * PATTERN[:, None, None] - PATTERN[:, None, None] * 4 / SIZE**2


def make_batch(batch: int, frames: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent videos (B, frames, CHANNELS, SIZE, SIZE) and packed actions (B, frames, 1, 1) int64.

    Action t led to frame t; frame 0 has none (action 0, to be masked by the caller if wanted).
    """
    pos = torch.randint(0, SIZE, (batch, 2), generator=generator)
    actions = torch.randint(0, 5, (batch, frames), generator=generator)
    actions[:, 0] = 0
    out = []
    for t in range(frames):
        pos = (pos + MOVES[actions[:, t]]) % SIZE
        out.append(render(pos))
    return torch.stack(out, dim=1), actions[:, :, None, None]
