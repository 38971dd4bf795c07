"""One key/value buffer kept across the steps of a batch of tracks (the vector env's hot path).

Gathering every selected frame of every track into a new batch cache each step
(`KVCache.batch_from_entries`) moves the whole context through memory every step: at batch 32 on the
shipped Crafter model that is ~15,000 small copies and a zero fill of the buffer, about a fifth of a
step on a 2-core CPU. A batch stepped again and again mostly keeps its context: each step adds one
frame per track and the scheme drops a few. `BatchCache` therefore keeps the batch's cache in slot
layout (`KVCache.slots`): row b holds track b's selected frames in `budget + 1` slots, in no particular
order (attention does not care about order: the frames' positions are in their rotated keys), the
forward of the new frame writes its keys and values straight into a free slot of its row, and frames
the scheme drops just stop being marked valid. Nothing is gathered.

The tracks' own per-frame entries (`Track.kv`) stay the reference: a row is reloaded from them when
its track is not the one the row last stepped, or was stepped elsewhere since (a reset, a track used
in another batch), so results do not depend on which batch a track was stepped in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from worldsim.models.kv_cache import KVCache


class BatchCache:
    """The batch's keys/values, latents and noise levels in slots; see the module docstring."""

    def __init__(self, budget: int) -> None:
        self.slots = budget + 1  # the selected frames (at most the budget) and the new frame's slot
        self.tracks: list = []  # the track each row last stepped
        self.lengths: list[int] = []  # its length then (a different length: it was stepped elsewhere)
        self.slot_of: list[dict[int, int]] = []  # per row: frame position -> slot
        self.write: Tensor | None = None  # (B,) each row's slot for the new frame of the current step
        self.reloads = 0  # rows loaded from their tracks' entries (tests and benchmarks read it)

    def context(self, tracks: Sequence, selections: Sequence[Sequence[int]]) -> KVCache:
        """The batch's cache for this step: each track's `selections[b]` frames valid, a free slot to write."""
        if any(len(s) >= self.slots for s in selections):
            raise ValueError(f"a selection of {max(len(s) for s in selections)} frames does not fit "
                             f"{self.slots - 1} context slots (the scheme's budget)")
        if len(tracks) != len(self.tracks):
            self._allocate(tracks)
        for b, (track, selection) in enumerate(zip(tracks, selections)):
            mapping = self.slot_of[b]
            if self.tracks[b] is not track or self.lengths[b] != track.length or any(i not in mapping for i in selection):
                self._load(b, track, selection)
            else:
                self.slot_of[b] = {i: mapping[i] for i in selection}
        valid, write, newest = [], [], []
        for b, selection in enumerate(selections):
            used = set(self.slot_of[b].values())
            valid.append([j in used for j in range(self.slots)])
            write.append(min(j for j in range(self.slots) if j not in used))
            newest.append(self.slot_of[b][max(selection)])
        device = self.frame_index.device
        self.write = torch.tensor(write, dtype=torch.long, device=device)
        return KVCache(keys=self.keys, values=self.values, tokens_per_frame=self.tokens, frame_index=self.frame_index,
                       latents=self.latents, noise_level=self.levels, valid=torch.tensor(valid, device=device),
                       slots=self.write, newest=torch.tensor(newest, dtype=torch.long, device=device))

    def commit(self, tracks: Sequence, latents: Tensor, level: float) -> None:
        """Record this step's new frames (the forward already wrote their keys/values into the write slots):
        latents (B, C, h, w) as the context sees them, at noise `level`; call before the tracks' lengths grow."""
        rows = torch.arange(len(tracks), device=self.write.device)
        self.latents[rows, self.write] = latents.to(self.latents.dtype)
        self.levels[rows, self.write] = level
        self.frame_index[rows, self.write] = torch.tensor([t.length for t in tracks], device=self.write.device)
        for b, (track, slot) in enumerate(zip(tracks, self.write.tolist())):
            self.slot_of[b][track.length] = slot
            self.lengths[b] = track.length + 1

    def _allocate(self, tracks: Sequence) -> None:
        entry = next(iter(tracks[0].kv.values()))
        depth, heads, n, head_dim = entry["keys"].shape
        batch, device = len(tracks), entry["keys"].device
        # zeros, not empty: a masked slot still multiplies its (zero) values by a zero weight
        keys = entry["keys"].new_zeros(depth, batch, heads, self.slots * n, head_dim)
        values = entry["values"].new_zeros(depth, batch, heads, self.slots * n, head_dim)
        # per-layer views by indexing, not unbind: the forward writes into them
        self.keys, self.values = [keys[i] for i in range(depth)], [values[i] for i in range(depth)]
        self._keys, self._values, self.tokens = keys, values, n
        self.frame_index = torch.zeros(batch, self.slots, dtype=torch.long, device=device)
        self.latents = entry["latent"].new_zeros(batch, self.slots, *entry["latent"].shape)
        self.levels = torch.zeros(batch, self.slots, dtype=entry["noise_level"].dtype, device=device)
        self.tracks, self.lengths = [None] * batch, [-1] * batch
        self.slot_of = [{} for _ in range(batch)]

    def _load(self, b: int, track, selection: Sequence[int]) -> None:
        n = self.tokens
        for j, i in enumerate(selection):
            e = track.kv[i]
            self._keys[:, b, :, j * n:(j + 1) * n] = e["keys"]
            self._values[:, b, :, j * n:(j + 1) * n] = e["values"]
            self.frame_index[b, j], self.latents[b, j], self.levels[b, j] = e["frame_index"], e["latent"], e["noise_level"]
        self.tracks[b], self.lengths[b] = track, track.length
        self.slot_of[b] = {i: j for j, i in enumerate(selection)}
        self.reloads += 1
