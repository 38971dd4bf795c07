"""A window of real rows -> per-latent-frame actions, rewards and termination flags.

The autoencoder encodes ``T = 1 + m*k`` real frames to ``1 + m`` latent frames: latent frame 0
covers row 0 alone, latent frame ``j >= 1`` covers rows ``1 + (j-1)k .. jk``. Row t's action is
the one that LED TO obs t, so latent frame j is conditioned on the k actions of the rows it
covers, its reward is their summed reward and it is terminal if any of them terminated. Latent
frame 0 has one real sub-step; it is put in the LAST of its k slots (the action right before the
frame, as for every other frame) and the other k-1 slots are masked as "no action".
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def num_latent_frames(frames: int, k: int) -> int:
    """``1 + (T - 1) / k``; ValueError when T is not 1 + m*k."""
    if frames < 1 or (frames - 1) % k:
        raise ValueError(f"a window of {frames} frames does not fit temporal factor k={k}: use 1 + m*k frames "
                         f"(e.g. {1 + max(frames - 1, 0) // k * k} or {1 + (max(frames - 1, 0) // k + 1) * k})")
    return 1 + (frames - 1) // k


def num_real_frames(latent_frames: int, k: int) -> int:
    """``1 + (T' - 1) * k``: the real frames (rows) that `latent_frames` latent frames cover, the inverse of `num_latent_frames`."""
    return 1 + (latent_frames - 1) * k


def group_rows(x: Tensor, k: int, fill: float | bool = 0) -> Tensor:
    """Per-row values (B, T, ...) -> per-latent-frame slots (B, T', k, ...).

    Slot ``[:, 0, k-1]`` holds row 0; slots ``[:, 0, :k-1]`` are `fill`; ``[:, j, i]`` holds row
    ``1 + (j-1)k + i`` for j >= 1.
    """
    batch, frames = x.shape[:2]
    num_latent_frames(frames, k)
    head = torch.full((batch, 1, k, *x.shape[2:]), fill, dtype=x.dtype, device=x.device)  # (B, 1, k, ...)
    head[:, 0, k - 1] = x[:, 0]
    rest = rearrange(x[:, 1:], "b (j k) ... -> b j k ...", k=k)  # (B, T'-1, k, ...)
    return torch.cat([head, rest], dim=1)  # (B, T', k, ...)


def latent_actions(action: Tensor, has_action: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Packed actions (B, T, D) and has_action bool (B, T) -> actions (B, T', k, D) and mask (B, T', k)."""
    return group_rows(action, k, 0), group_rows(has_action.bool(), k, False)


def latent_rewards(reward: Tensor, k: int) -> Tensor:
    """Rewards float (B, T) -> the summed reward of each latent frame's rows, float32 (B, T')."""
    return group_rows(reward.float(), k, 0.0).sum(dim=2)


def latent_terminated(terminated: Tensor, k: int) -> Tensor:
    """Terminated bool (B, T) -> 1.0 where any of a latent frame's rows terminated, float32 (B, T')."""
    return group_rows(terminated.bool(), k, False).any(dim=2).float()
