"""Action encoder: the k packed actions a latent frame covers -> one conditioning vector.

Actions arrive packed by `worldsim.spaces` (Discrete -> one index, MultiDiscrete -> one index per
component, Box -> its floats row-major, Dict -> children concatenated in key order), as a float
or integer tensor (B, T, k, D) with D = packed_dim(space), plus a bool mask (B, T, k) where False
means "no action" (action-free video, the sub-steps of the first latent frame that do not exist,
classifier-free guidance dropout).

Each leaf of the space has its own embedding (a table per Discrete / MultiDiscrete component, a
linear map of the normalised floats for a Box); a Dict sums its leaves. Per sub-step the action
embedding plus a learned sub-step position goes through a small MLP; a masked sub-step is replaced
by a learned null embedding; the frame's vector is the mean over its k sub-steps. The MLP after
the position makes the mean order-aware (a plain mean of embedding + position would not be), and
a mean keeps every sub-step's influence comparable, whatever k is. A frame whose sub-steps are all
masked gets exactly the null embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from worldsim.spaces import SUPPORTED, packed_dim


@dataclass(frozen=True)
class _Leaf:
    name: str  # dotted path in the space ("" for a non-Dict space)
    space: spaces.Space
    start: int  # first packed column
    width: int  # packed columns


def _leaves(space: spaces.Space, name: str = "", start: int = 0) -> list[_Leaf]:
    if isinstance(space, spaces.Dict):
        out = []
        for key, child in space.spaces.items():
            out += _leaves(child, f"{name}.{key}" if name else key, start)
            start += packed_dim(child)
        return out
    if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete, spaces.Box)):
        return [_Leaf(name, space, start, packed_dim(space))]
    raise TypeError(f"unsupported action space {space!r}: worldsim supports {SUPPORTED}")


def _sizes(space: spaces.Discrete | spaces.MultiDiscrete) -> list[int]:
    """Number of values of each discrete component."""
    if isinstance(space, spaces.Discrete):
        return [int(space.n)]
    return [int(n) for n in space.nvec]


class _IndexEmbed(nn.Module):
    """One embedding table per discrete component, summed (Discrete has one component)."""

    def __init__(self, sizes: list[int], dim: int) -> None:
        super().__init__()
        self.sizes = sizes
        self.tables = nn.ModuleList(nn.Embedding(n, dim) for n in sizes)

    def forward(self, columns: Tensor) -> Tensor:
        """(..., len(sizes)) integer-valued, each in [0, n) -> (..., dim)."""
        index = columns.round().long()
        return sum(table(index[..., i]) for i, table in enumerate(self.tables))


class _BoxEmbed(nn.Module):
    """Linear map of a Box's floats, scaled to [-1, 1] on the axes whose bounds are finite."""

    def __init__(self, box: spaces.Box, dim: int) -> None:
        super().__init__()
        low, high = box.low.reshape(-1).astype(np.float64), box.high.reshape(-1).astype(np.float64)
        bounded = np.isfinite(low) & np.isfinite(high) & (high > low)
        center = np.where(bounded, (low + high) / 2, 0.0)
        half = np.where(bounded, (high - low) / 2, 1.0)
        self.register_buffer("center", torch.tensor(center, dtype=torch.float32), persistent=False)
        self.register_buffer("half_range", torch.tensor(half, dtype=torch.float32), persistent=False)
        self.proj = nn.Linear(len(center), dim)

    def forward(self, columns: Tensor) -> Tensor:
        """(..., prod(shape)) floats -> (..., dim)."""
        return self.proj(((columns.float() - self.center) / self.half_range).to(self.proj.weight.dtype))


class ActionEncoder(nn.Module):
    """Embed packed actions (B, T, k, D) with mask (B, T, k) into per-frame vectors (B, T, dim)."""

    def __init__(self, space: spaces.Space, dim: int, substeps: int) -> None:
        super().__init__()
        self.space = space
        self.dim = dim
        self.substeps = substeps  # k: real frames (and actions) per latent frame
        self.packed_dim = packed_dim(space)
        self.leaves = _leaves(space)
        self.embeds = nn.ModuleList(
            _BoxEmbed(leaf.space, dim) if isinstance(leaf.space, spaces.Box) else _IndexEmbed(_sizes(leaf.space), dim)
            for leaf in self.leaves
        )
        self.substep_position = nn.Parameter(torch.randn(substeps, dim) * 0.02)
        self.null = nn.Parameter(torch.randn(dim) * 0.02)  # "no action"
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def null_embedding(self, batch: int, frames: int) -> Tensor:
        """The "no action" vector for every frame: (B, T, dim)."""
        return self.null.expand(batch, frames, self.dim)

    def forward(self, actions: Tensor, mask: Tensor) -> Tensor:
        """actions (B, T, k, D) packed, mask (B, T, k) bool (False: no action) -> (B, T, dim)."""
        self.check(actions, mask)
        valid = mask[..., None]
        actions = torch.where(valid, actions, torch.zeros((), dtype=actions.dtype, device=actions.device))
        e = sum(embed(actions[..., leaf.start : leaf.start + leaf.width]) for leaf, embed in zip(self.leaves, self.embeds))
        h = self.mlp(e + self.substep_position)  # (B, T, k, dim)
        h = torch.where(valid, h, self.null.to(h.dtype))
        return h.mean(dim=2)  # (B, T, dim)

    def check(self, actions: Tensor, mask: Tensor) -> None:
        """Raise ValueError naming the space when shapes or the unmasked values do not fit it."""
        expected = f"(B, T, {self.substeps}, {self.packed_dim}) for action space {self.space}"
        if actions.ndim != 4 or actions.shape[2:] != (self.substeps, self.packed_dim):
            raise ValueError(f"actions have shape {tuple(actions.shape)}, expected {expected}")
        if mask.shape != actions.shape[:3] or mask.dtype != torch.bool:
            raise ValueError(f"action_mask must be bool of shape {tuple(actions.shape[:3])}, got {mask.dtype} {tuple(mask.shape)}")
        for leaf, embed in zip(self.leaves, self.embeds):
            values = actions[..., leaf.start : leaf.start + leaf.width][mask]  # (M, width), unmasked only
            what = f"action component {leaf.name!r} of space {self.space}" if leaf.name else f"actions of space {self.space}"
            if not values.is_floating_point() and isinstance(embed, _BoxEmbed):
                values = values.float()
            if values.is_floating_point() and not bool(torch.isfinite(values).all()):
                raise ValueError(f"{what} contain NaN or infinite values where action_mask is True")
            if isinstance(embed, _IndexEmbed) and values.numel():
                if values.is_floating_point() and not bool((values == values.round()).all()):
                    raise ValueError(f"{what} must be integer indices, got non-integer values")
                sizes = torch.tensor(embed.sizes, device=values.device)
                bad = (values < 0) | (values >= sizes)
                if bool(bad.any()):
                    column = int(bad.any(dim=0).nonzero()[0])
                    value = values[bad.any(dim=1)][0, column].item()
                    raise ValueError(
                        f"{what}: packed index {value} outside [0, {embed.sizes[column]}) "
                        f"(packed actions are a - start, see worldsim.spaces.pack_action)"
                    )
