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

A batch stepped again and again can instead keep one buffer of slots (`slots`, `newest`; see
`worldsim.sim.batch_cache`): each step writes only the new frames, nothing is gathered.

Tracks of a batch may hold different numbers of frames: `cat_batch` left-pads the shorter caches
and marks the padding in `valid`, which the DiT turns into an attention mask, so a whole batch runs
one forward per denoising step whatever each track's context length (the padded track's output
equals its output alone; tests/sim/test_vector_env.py checks it). The cache owns its layout:
`frame_entries` splits a batch-1 cache into per-frame entries (what a rollout keeps per track),
`from_frames` stacks them back.
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
    valid: Tensor | None = None  # (B, F) bool, False for left padding (see cat_batch); None: every frame is real
    spare: int = 0  # frames of room after the F cached ones in keys/values: the next forward writes its new frames there
    # Slot layout (a persistent batch buffer, `worldsim.sim.batch_cache`): the F frames are slots in no
    # particular order, `valid` marks the ones to attend to, and a forward of ONE new frame writes each
    # sample's keys/values into its own free slot `slots[b]` (B,) long; `newest[b]` (B,) long is the
    # slot of each sample's newest frame (a previous_frame DiT reads its latent).
    slots: Tensor | None = None
    newest: Tensor | None = None

    @property
    def num_frames(self) -> int:
        return self.frame_index.shape[1]

    @property
    def batch_size(self) -> int:
        return self.frame_index.shape[0]

    def append(self, other: KVCache) -> KVCache:
        """This cache followed by `other`'s frames (same batch, layers and tokens per frame)."""
        self._without_spare("append to")
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
            valid=None if self.valid is None and other.valid is None else torch.cat([self.valid_mask(), other.valid_mask()], 1),
        )

    def select(self, frames: Sequence[int]) -> KVCache:
        """Keep only the cached frames at these positions (0 = oldest), in the given order."""
        self._without_spare("select from")
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
            valid=None if self.valid is None else self.valid[:, positions],
        )

    def _without_spare(self, what: str) -> None:
        if self.spare or self.slots is not None:
            raise ValueError(f"cannot {what} a cache with spare room for new frames (it belongs to one forward)")

    def fill_spare(self, new: KVCache) -> KVCache:
        """This cache with its spare room counted as `new`'s frames (whose keys/values a forward wrote there)."""
        if new.num_frames != self.spare:
            raise ValueError(f"{new.num_frames} new frames for a cache with room for {self.spare}")
        return KVCache(
            keys=self.keys, values=self.values, tokens_per_frame=self.tokens_per_frame,
            frame_index=torch.cat([self.frame_index, new.frame_index], dim=1),
            latents=_cat_or_none(self.latents, new.latents), noise_level=_cat_or_none(self.noise_level, new.noise_level),
            valid=None if self.valid is None else torch.cat([self.valid, new.valid_mask()], dim=1),
        )

    def valid_mask(self) -> Tensor:
        """(B, F) bool, True for real frames (all of them unless the cache was padded)."""
        if self.valid is not None:
            return self.valid
        return torch.ones(self.frame_index.shape, dtype=torch.bool, device=self.frame_index.device)

    def pad_to(self, frames: int) -> KVCache:
        """This cache left-padded to `frames` frames (zeros, marked invalid); itself if it has that many."""
        self._without_spare("pad")
        missing = frames - self.num_frames
        if missing < 0:
            raise ValueError(f"cannot pad a cache of {self.num_frames} frames to {frames}")
        if missing == 0:
            return self
        n, batch = self.tokens_per_frame, self.batch_size

        def left(x: Tensor, dim: int, per_frame: int) -> Tensor:
            shape = list(x.shape)
            shape[dim] = missing * per_frame
            return torch.cat([x.new_zeros(shape), x], dim=dim)

        return KVCache(
            keys=[left(k, 2, n) for k in self.keys], values=[left(v, 2, n) for v in self.values], tokens_per_frame=n,
            frame_index=left(self.frame_index, 1, 1),
            latents=None if self.latents is None else left(self.latents, 1, 1),
            noise_level=None if self.noise_level is None else left(self.noise_level, 1, 1),
            valid=torch.cat([torch.zeros(batch, missing, dtype=torch.bool, device=self.frame_index.device),
                             self.valid_mask()], dim=1),
        )

    def frame_entries(self) -> list[dict[str, Tensor]]:
        """A batch-1 cache as per-frame entries: keys, values (depth, heads, N, head_dim), frame_index, latent, noise_level."""
        if self.batch_size != 1:
            raise ValueError(f"frame_entries splits a batch-1 cache, this one has batch {self.batch_size}")
        n = self.tokens_per_frame
        keys, values = torch.stack(self.keys)[:, 0], torch.stack(self.values)[:, 0]  # (depth, heads, F * N, hd)
        out = []
        for f in range(self.num_frames):
            entry = {"keys": keys[:, :, f * n:(f + 1) * n], "values": values[:, :, f * n:(f + 1) * n],
                     "frame_index": self.frame_index[0, f]}
            if self.latents is not None:
                entry["latent"], entry["noise_level"] = self.latents[0, f], self.noise_level[0, f]
            out.append(entry)
        return out

    def newest_entries(self) -> list[dict[str, Tensor]]:
        """The newest frame of every sample of the batch as a per-frame entry (see `frame_entries`)."""
        n, end = self.tokens_per_frame, self.num_frames * self.tokens_per_frame  # (spare room holds nothing)
        keys = torch.stack([k[:, :, end - n:end] for k in self.keys], 1)  # (B, depth, heads, N, hd)
        values = torch.stack([v[:, :, end - n:end] for v in self.values], 1)
        out = []
        for b in range(self.batch_size):
            entry = {"keys": keys[b], "values": values[b], "frame_index": self.frame_index[b, -1]}
            if self.latents is not None:
                entry["latent"], entry["noise_level"] = self.latents[b, -1], self.noise_level[b, -1]
            out.append(entry)
        return out

    @staticmethod
    def batch_from_entries(tracks: Sequence[Sequence[dict[str, Tensor]]], spare: int = 0) -> KVCache:
        """One batched cache of per-frame entries (one list per sample, as `frame_entries` gives them).

        Shorter lists are left-padded (marked in `valid`), and `spare` frames of room are left at the
        end for the next forward's new frames: every key and value is copied once, straight into place
        (no per-sample cache, no concatenation in attention).
        """
        if not tracks or any(not t for t in tracks):
            raise ValueError("every sample needs at least one cached frame")
        first = tracks[0][0]
        depth, heads, n, head_dim = first["keys"].shape
        batch, frames = len(tracks), max(len(t) for t in tracks)
        like = first["keys"]
        keys = like.new_zeros(depth, batch, heads, (frames + spare) * n, head_dim)
        values = first["values"].new_zeros(depth, batch, heads, (frames + spare) * n, head_dim)
        index = torch.zeros(batch, frames, dtype=torch.long, device=like.device)
        valid = torch.zeros(batch, frames, dtype=torch.bool, device=like.device)
        has_latents = all("latent" in e for t in tracks for e in t)
        latents = first["latent"].new_zeros(batch, frames, *first["latent"].shape) if has_latents else None
        levels = first["noise_level"].new_zeros(batch, frames) if has_latents else None
        for b, entries in enumerate(tracks):
            offset = frames - len(entries)
            for f, e in enumerate(entries, start=offset):
                keys[:, b, :, f * n:(f + 1) * n] = e["keys"]
                values[:, b, :, f * n:(f + 1) * n] = e["values"]
                index[b, f] = e["frame_index"]
                if has_latents:
                    latents[b, f], levels[b, f] = e["latent"], e["noise_level"]
            valid[b, offset:] = True
        # per-layer views by indexing, not unbind: the forward writes into them (unbind's views refuse in-place writes)
        return KVCache(keys=[keys[i] for i in range(depth)], values=[values[i] for i in range(depth)], tokens_per_frame=n,
                       frame_index=index,
                       latents=latents, noise_level=levels, valid=None if bool(valid.all()) else valid, spare=spare)

    @staticmethod
    def from_frames(entries: Sequence[dict[str, Tensor]]) -> KVCache:
        """The batch-1 cache of these per-frame entries (as `frame_entries` gives them), in order."""
        return KVCache.batch_from_entries([entries])

    def keep_last(self, frames: int) -> KVCache:
        """Keep the newest `frames` cached frames (all of them if there are fewer)."""
        if frames < 0:
            raise ValueError(f"cannot keep {frames} frames")
        return self.select(range(max(self.num_frames - frames, 0), self.num_frames))


def _cat_or_none(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """a and b joined along frames, or None when either cache lacks them."""
    return None if a is None or b is None else torch.cat([a, b], dim=1)


def cat_batch(caches: Sequence[KVCache]) -> KVCache:
    """Caches stacked along the batch; shorter ones are left-padded to the longest (see `KVCache.pad_to`)."""
    if len(caches) == 1:
        return caches[0]
    frames = max(c.num_frames for c in caches)
    caches = [c.pad_to(frames) for c in caches]
    first = caches[0]
    has_latents = all(c.latents is not None for c in caches)
    padded = any(c.valid is not None for c in caches)
    return KVCache(
        keys=[torch.cat(layer, dim=0) for layer in zip(*(c.keys for c in caches))],
        values=[torch.cat(layer, dim=0) for layer in zip(*(c.values for c in caches))],
        tokens_per_frame=first.tokens_per_frame,
        frame_index=torch.cat([c.frame_index for c in caches], dim=0),
        latents=torch.cat([c.latents for c in caches]) if has_latents else None,
        noise_level=torch.cat([c.noise_level for c in caches]) if has_latents else None,
        valid=torch.cat([c.valid_mask() for c in caches]) if padded else None,
    )


def batch_item(cache: KVCache, j: int) -> KVCache:
    """Sample j of the batch as a batch-1 cache."""
    return KVCache(
        keys=[x[j:j + 1] for x in cache.keys], values=[x[j:j + 1] for x in cache.values],
        tokens_per_frame=cache.tokens_per_frame, frame_index=cache.frame_index[j:j + 1],
        latents=None if cache.latents is None else cache.latents[j:j + 1],
        noise_level=None if cache.noise_level is None else cache.noise_level[j:j + 1],
        valid=None if cache.valid is None else cache.valid[j:j + 1],
    )


# The latent frames a DiT reads beside each frame of a sequence (its previous-frame pathways and conv prior): from
# the sequence itself, and before it from the cache's newest frames.

def previous_latents(x: Tensor, noise_level: Tensor, cache: KVCache | None) -> tuple[Tensor, Tensor]:
    """Each frame's previous frame in the sequence and its noise level: (B, T, C, h, w), (B, T)."""
    if cache is not None and cache.num_frames:
        if cache.latents is None:
            raise ValueError("this DiT reads each frame's previous latent (previous_frame=True), but the cache "
                             "holds no latents: build it with DiT.build_cache or pass latents= to KVCache")
        if cache.newest is None:
            first, first_level = cache.latents[:, -1:], cache.noise_level[:, -1:]
        else:  # slot layout: the newest frame's slot
            rows = torch.arange(x.shape[0], device=x.device)
            first, first_level = cache.latents[rows, cache.newest][:, None], cache.noise_level[rows, cache.newest][:, None]
        first, first_level = first.to(x.dtype), first_level.to(noise_level.dtype)
    else:  # nothing before the first frame: zeros, marked as pure noise
        first = torch.zeros_like(x[:, :1])
        first_level = torch.ones_like(noise_level[:, :1])
    return torch.cat([first, x[:, :-1]], dim=1), torch.cat([first_level, noise_level[:, :-1]], dim=1)


def earlier_latents(x: Tensor, noise_level: Tensor, cache: KVCache | None, count: int) -> tuple[Tensor, Tensor]:
    """The `count` frames before each frame's previous one in the sequence, newest first (2, 3, ... frames
    before it), and their noise levels: (B, T, count, C, h, w), (B, T, count).

    Before the sequence they come from the cache's newest real frames (by time index, in any
    layout); where there are fewer, zeros at noise level 1.
    """
    batch, span = x.shape[0], count + 1  # frames needed before the sequence
    past = torch.zeros_like(x[:, :1]).expand(-1, span, -1, -1, -1).clone()  # (B, span, C, h, w): oldest first
    past_level = torch.ones_like(noise_level[:, :1]).expand(-1, span).clone()
    if cache is not None and cache.num_frames:
        if cache.latents is None:
            raise ValueError("this DiT reads earlier latents (previous_frames=2), but the cache holds no latents: "
                             "build it with DiT.build_cache or pass latents= to KVCache")
        time = cache.frame_index.masked_fill(~cache.valid_mask(), -1)  # (B, F); padding and free slots last
        n = min(span, cache.num_frames)
        newest = time.topk(n, dim=1).indices.flip(1)  # (B, n) oldest first
        rows = torch.arange(batch, device=x.device)[:, None]
        real = time.gather(1, newest) >= 0  # (B, n)
        got = cache.latents[rows, newest].to(x.dtype)  # (B, n, C, h, w)
        got_level = cache.noise_level[rows, newest].to(noise_level.dtype)
        past[:, span - n:] = torch.where(real[:, :, None, None, None], got, past[:, span - n:])
        past_level[:, span - n:] = torch.where(real, got_level, past_level[:, span - n:])
    frames, seq, levels = x.shape[1], torch.cat([past, x], dim=1), torch.cat([past_level, noise_level], dim=1)
    backs = range(2, count + 2)  # frame t is seq[span + t]; d before it is seq[span + t - d]
    return (torch.stack([seq[:, span - d:span - d + frames] for d in backs], 2),
            torch.stack([levels[:, span - d:span - d + frames] for d in backs], 2))
