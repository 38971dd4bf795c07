"""Key/value cache of clean context frames, so a rollout encodes its context once.

The diffusion transformer's attention is causal at frame granularity, so the keys and values of a
context frame at every layer depend only on that frame and the frames before it. They are computed
once (`DiT.build_cache`) and reused while denoising the next frames; the output then equals a full
recomputation over [context, new] (tests/models/test_dit.py checks it).

Dropping old frames (`keep_last`, `select`) keeps the cost per step constant, but the kept frames'
keys and values were computed while they could still see the dropped ones. That is a cheap
approximation of recomputing the shorter context, not the same thing; a rollout that needs exact
equality with a fresh context (FDM-style non-contiguous context that changes every step) rebuilds
the cache with `build_cache` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class KVCache:
    """Per-layer keys (after rotary) and values of F cached frames of N tokens each."""

    keys: list[Tensor]  # per layer (B, heads, F * N, head_dim)
    values: list[Tensor]  # per layer (B, heads, F * N, head_dim)
    tokens_per_frame: int  # N = (h / p) * (w / p) of the latents the cache was built from
    frame_index: Tensor  # (B, F) long: each cached frame's true time index
    latents: Tensor | None = None  # (B, F, C, h, w): the frames' inputs (a previous_frame DiT reads the newest)
    noise_level: Tensor | None = None  # (B, F): their noise levels; set exactly when latents is

    @property
    def num_frames(self) -> int:
        return self.frame_index.shape[1]

    @property
    def batch_size(self) -> int:
        return self.frame_index.shape[0]

    def append(self, other: KVCache) -> KVCache:
        """This cache followed by `other`'s frames (same batch, layers and tokens per frame)."""
        if (other.batch_size, len(other.keys), other.tokens_per_frame) != (self.batch_size, len(self.keys), self.tokens_per_frame):
            raise ValueError(
                f"cannot append a cache of batch {other.batch_size}, {len(other.keys)} layers, {other.tokens_per_frame} "
                f"tokens per frame to one of batch {self.batch_size}, {len(self.keys)} layers, {self.tokens_per_frame} tokens per frame"
            )
        return KVCache(
            keys=[torch.cat([a, b], dim=2) for a, b in zip(self.keys, other.keys)],
            values=[torch.cat([a, b], dim=2) for a, b in zip(self.values, other.values)],
            tokens_per_frame=self.tokens_per_frame,
            frame_index=torch.cat([self.frame_index, other.frame_index], dim=1),
            latents=_cat_or_none(self.latents, other.latents),
            noise_level=_cat_or_none(self.noise_level, other.noise_level),
        )

    def select(self, frames: Sequence[int]) -> KVCache:
        """Keep only the cached frames at these positions (0 = oldest), in the given order."""
        frames = list(frames)
        if any(not -self.num_frames <= f < self.num_frames for f in frames):
            raise ValueError(f"frame positions {frames} out of range for a cache of {self.num_frames} frames")
        frames = [f % self.num_frames for f in frames]
        n = self.tokens_per_frame
        device = self.frame_index.device
        tokens = torch.tensor([f * n + i for f in frames for i in range(n)], dtype=torch.long, device=device)
        positions = torch.tensor(frames, dtype=torch.long, device=device)
        return KVCache(
            keys=[k.index_select(2, tokens) for k in self.keys],
            values=[v.index_select(2, tokens) for v in self.values],
            tokens_per_frame=n,
            frame_index=self.frame_index[:, positions],
            latents=None if self.latents is None else self.latents[:, positions],
            noise_level=None if self.noise_level is None else self.noise_level[:, positions],
        )

    def keep_last(self, frames: int) -> KVCache:
        """Keep the newest `frames` cached frames (all of them if there are fewer)."""
        if frames < 0:
            raise ValueError(f"cannot keep {frames} frames")
        return self.select(range(max(self.num_frames - frames, 0), self.num_frames))


def _cat_or_none(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """a and b joined along frames, or None when either cache lacks them."""
    return None if a is None or b is None else torch.cat([a, b], dim=1)


def cat_batch(caches: Sequence[KVCache]) -> KVCache:
    """Caches of the same frame count stacked along the batch."""
    if len(caches) == 1:
        return caches[0]
    first = caches[0]
    has_latents = all(c.latents is not None for c in caches)
    return KVCache(
        keys=[torch.cat(layer, dim=0) for layer in zip(*(c.keys for c in caches))],
        values=[torch.cat(layer, dim=0) for layer in zip(*(c.values for c in caches))],
        tokens_per_frame=first.tokens_per_frame,
        frame_index=torch.cat([c.frame_index for c in caches], dim=0),
        latents=torch.cat([c.latents for c in caches]) if has_latents else None,
        noise_level=torch.cat([c.noise_level for c in caches]) if has_latents else None,
    )


def batch_item(cache: KVCache, j: int) -> KVCache:
    """Sample j of the batch as a batch-1 cache."""
    return KVCache(
        keys=[x[j:j + 1] for x in cache.keys], values=[x[j:j + 1] for x in cache.values],
        tokens_per_frame=cache.tokens_per_frame, frame_index=cache.frame_index[j:j + 1],
        latents=None if cache.latents is None else cache.latents[j:j + 1],
        noise_level=None if cache.noise_level is None else cache.noise_level[j:j + 1],
    )
