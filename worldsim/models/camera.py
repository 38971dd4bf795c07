"""World-anchored positions for some attention heads: a view that scrolls keeps its places where they are.

In a world whose moves scroll the view by a known amount (Crafter: a move is one tile, one token of the
shipped 72x72 model), a place seen in frame j at patch (r, c) is at patch (r, c) - (camera_t - camera_j) in
frame t, where camera is the view's origin summed over the moves so far. The DiT's rotary positions are
relative, so giving a head's tokens the positions (r, c) + camera instead of (r, c) makes "the same place"
the offset 0 in that head's attention, however many moves lie between the frames: what a head has to
learn to recall a place left and seen again is then the same pattern as copying the previous frame.
WorldMem (xizaoqu/WorldMem) conditions its memory frames on their camera pose for the same reason.

`DiTConfig.world_heads` heads (the last ones) use these positions, the others the screen's (the inventory
of Crafter does not scroll). The camera comes from the actions alone (`DiTConfig.camera_moves`: what each
action does to the view's origin, in patches), so a blocked move counts as made: the table is what the
action asks, the screen heads and the conv prior see what happened.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def camera_table(moves: Sequence[Sequence[int]], actions: int, device: torch.device | str | None = None) -> Tensor:
    """(actions, 2) float: the view's origin shift (rows, columns, in patches) of each Discrete action; 0 if unlisted.

    moves: [action, d_row, d_col] triples, e.g. Crafter's [[1, 0, -1], [2, 0, 1], [3, -1, 0], [4, 1, 0]].
    """
    table = torch.zeros(actions, 2, device=device)
    for move in moves:
        if len(move) != 3 or not 0 <= int(move[0]) < actions:
            raise ValueError(f"camera_moves entries are [action, d_row, d_col] with 0 <= action < {actions}, got {list(move)}")
        table[int(move[0])] = torch.tensor([float(move[1]), float(move[2])])
    return table


def camera_steps(actions: Tensor, mask: Tensor | None, table: Tensor) -> Tensor:
    """The camera's shift over each latent frame (B, T, 2): its k sub-steps' shifts summed, masked ones none.

    actions: packed Discrete actions (B, T, k, 1); mask (B, T, k) bool or None (all taken).
    """
    shift = table.to(actions.device)[actions[..., 0].long().clamp(0, len(table) - 1)]  # (B, T, k, 2)
    if mask is not None:
        shift = shift * mask[..., None].to(shift.dtype)
    return shift.sum(dim=2)


def camera_positions(actions: Tensor, mask: Tensor | None, table: Tensor) -> Tensor:
    """The camera after each latent frame (B, T, 2), from 0 before the first: the running sum of `camera_steps`."""
    return camera_steps(actions, mask, table).cumsum(dim=1)


def world_rotary(rotary, frame_index: Tensor, rows: Tensor, cols: Tensor, camera: Tensor | None, heads: int,
                 world_heads: int) -> tuple[Tensor, Tensor]:
    """Rotation angles (cos, sin) for B sequences of T frames of N patches.

    frame_index (B, T) long; rows, cols (N,) each patch's screen position; camera (B, T, 2) or None.
    Without world heads (or camera): (B, T * N, head_dim / 2), shared by every head. With them:
    (B, heads, T * N, head_dim / 2), the last `world_heads` heads placed at the screen position plus the camera.
    """
    batch, frames = frame_index.shape
    n = rows.shape[0]
    time = frame_index[:, :, None].expand(batch, frames, n).reshape(batch, frames * n)
    screen_r = rows[None, None].expand(batch, frames, n).reshape(batch, frames * n)
    screen_c = cols[None, None].expand(batch, frames, n).reshape(batch, frames * n)
    screen = rotary(time, screen_r, screen_c)
    if not world_heads or camera is None:
        return screen
    cam = camera.float()
    world_r = (rows[None, None].float() + cam[:, :, 0:1]).reshape(batch, frames * n)
    world_c = (cols[None, None].float() + cam[:, :, 1:2]).reshape(batch, frames * n)
    world = rotary(time, world_r, world_c)
    return tuple(torch.stack([s] * (heads - world_heads) + [w] * world_heads, dim=1) for s, w in zip(screen, world))


def recalled_patches(camera: Tensor, grid_h: int, grid_w: int) -> Tensor:
    """(B, T, grid_h, grid_w) bool: the patches of each frame whose place was on screen in an earlier frame of the
    sequence but not in the frame just before it, i.e. what only a memory of the older frames can draw
    (`objective.recall_weight` weighs them up). camera (B, T, 2) in patches."""
    batch, frames, _ = camera.shape
    rows = torch.arange(grid_h, device=camera.device, dtype=torch.float32)[:, None].expand(grid_h, grid_w)
    cols = torch.arange(grid_w, device=camera.device, dtype=torch.float32)[None, :].expand(grid_h, grid_w)
    cam = camera.float()[:, :, None, None]  # (B, T, 1, 1, 2)

    def on_screen(t: int, j: int) -> Tensor:  # (B, gh, gw): frame t's patch places inside frame j's view
        r = rows + cam[:, t, ..., 0] - cam[:, j, ..., 0]
        c = cols + cam[:, t, ..., 1] - cam[:, j, ..., 1]
        return (r >= 0) & (r < grid_h) & (c >= 0) & (c < grid_w)

    out = torch.zeros(batch, frames, grid_h, grid_w, dtype=torch.bool, device=camera.device)
    for t in range(2, frames):
        earlier = torch.stack([on_screen(t, j) for j in range(t - 1)]).any(dim=0)
        out[:, t] = earlier & ~on_screen(t, t - 1)
    return out
