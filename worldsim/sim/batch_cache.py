"""One key/value buffer kept across the steps of a batch of tracks (the vector env's hot path).

Gathering every selected frame of every track into a new batch cache each step
(`KVCache.batch_from_entries`) moves the whole context through memory every step: at batch 32 on the
shipped Crafter model that is ~15,000 small copies and a zero fill of the buffer, about a fifth of a
step on a 2-core CPU. A batch stepped again and again mostly keeps its context: each step adds one
frame per track and the scheme drops a few. `BatchCache` therefore keeps the batch's cache in slot
layout (`KVCache.slots`): row b holds track b's selected frames in slots (as many as the longest context
needs, at most `budget + 1`), in no particular
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
        self.max_slots = budget + 1  # the selected frames (at most the budget) and the new frame's slot
        self.capacity = 0  # slots per row now: grown as contexts grow (attention costs what the slots hold)
        self.tracks: list = []  # the track each row last stepped
        self.lengths: list[int] = []  # its length then (a different length: it was stepped elsewhere)
        self.slot_of: list[dict[int, int]] = []  # per row: frame position -> slot
        self.rows: list[int] = []  # the rows of the tracks of the current step, in their order
        self.write: Tensor | None = None  # (B,) each of those rows' slot for the new frame of the current step
        self._sub: tuple[Tensor, Tensor] | None = None  # the gathered rows' keys/values when a step takes some rows only
        self.reloads = 0  # rows loaded from their tracks' entries (tests and benchmarks read it)

    def context(self, tracks: Sequence, selections: Sequence[Sequence[int]]) -> KVCache:
        """The batch's cache for this step: each track's `selections[b]` frames valid, a free slot to write."""
        longest = max(len(s) for s in selections)
        if longest >= self.max_slots:
            raise ValueError(f"a selection of {longest} frames does not fit {self.max_slots - 1} context slots "
                             "(the scheme's budget)")
        if not self.tracks:
            self._allocate(tracks, longest + 1)
        elif longest > self.capacity:
            self._resize(longest)  # room to load a row
        rows = self._rows(tracks)
        for b, track, selection in zip(rows, tracks, selections):
            mapping = self.slot_of[b]
            if self.tracks[b] is not track or self.lengths[b] != track.length or any(i not in mapping for i in selection):
                self._load(b, track, selection)
            else:
                self.slot_of[b] = {i: mapping[i] for i in selection}
        used = [set(m.values()) for m in self.slot_of]  # every row's: rows not stepped now keep their frames
        write = [min(j for j in range(self.max_slots) if j not in used[b]) for b in rows]
        # exactly the slots in use: a row's frames then do not depend on what its batch did before (a
        # masked slot and no slot are not bit-identical in attention), as seeded determinism asks
        need = max(max(max(u, default=0) for u in used), max(write)) + 1
        if need != self.capacity:
            self._resize(need)
        device = self.frame_index.device
        self.rows, self.write = rows, torch.tensor(write, dtype=torch.long, device=device)
        valid = torch.tensor([[j in used[b] for j in range(self.capacity)] for b in rows], device=device)
        newest = torch.tensor([self.slot_of[b][max(s)] for b, s in zip(rows, selections)], dtype=torch.long, device=device)
        if rows == list(range(len(self.tracks))):  # the whole buffer, in order: nothing moves
            self._sub = None
            keys, values, index, latents, levels = self.keys, self.values, self.frame_index, self.latents, self.levels
        else:  # some rows, or another order: one gather of those rows, written back at commit
            at = torch.tensor(rows, dtype=torch.long, device=device)
            self._sub = (self._keys.index_select(1, at), self._values.index_select(1, at))
            keys, values = ([x[i] for i in range(len(x))] for x in self._sub)  # indexing, not unbind: written into
            index, latents, levels = (x.index_select(0, at) for x in (self.frame_index, self.latents, self.levels))
        return KVCache(keys=keys, values=values, tokens_per_frame=self.tokens, frame_index=index, latents=latents,
                       noise_level=levels, valid=valid, slots=self.write, newest=newest)

    def commit(self, tracks: Sequence, latents: Tensor, level: float) -> None:
        """Record this step's new frames (the forward already wrote their keys/values into the write slots):
        latents (B, C, h, w) as the context sees them, at noise `level`; call before the tracks' lengths grow."""
        device = self.write.device
        rows = torch.tensor(self.rows, dtype=torch.long, device=device)
        if self._sub is not None:  # the gathered rows' new frames back into the buffer
            depth, _, heads, _, head_dim = self._keys.shape
            mine = torch.arange(len(self.rows), device=device)
            for buffer, sub in zip((self._keys, self._values), self._sub):
                full = buffer.view(depth, -1, heads, self.capacity, self.tokens, head_dim)
                part = sub.view(depth, -1, heads, self.capacity, self.tokens, head_dim)
                full[:, rows, :, self.write] = part[:, mine, :, self.write]
            self._sub = None
        self.latents[rows, self.write] = latents.to(self.latents.dtype)
        self.levels[rows, self.write] = level
        self.frame_index[rows, self.write] = torch.tensor([t.length for t in tracks], device=device)
        for b, track, slot in zip(self.rows, tracks, self.write.tolist()):
            self.slot_of[b][track.length] = slot
            self.lengths[b] = track.length + 1

    def _rows(self, tracks: Sequence) -> list[int]:
        """Each track's row: its own if it has one, else the row of a track not stepped now, else a new row."""
        where = {id(t): r for r, t in enumerate(self.tracks) if t is not None}
        rows = [where.get(id(t)) for t in tracks]
        rows = [r if r is not None and self.tracks[r] is t else None for r, t in zip(rows, tracks)]
        taken = set(rows)
        free = [r for r in range(len(self.tracks)) if r not in taken]
        for i, r in enumerate(rows):
            if r is None:
                rows[i] = free.pop(0) if free else self._add_row()
                self.tracks[rows[i]] = None  # loaded next
        return rows

    def _add_row(self) -> int:
        self._set(_extend(self._keys, 1, 1), _extend(self._values, 1, 1))
        self.frame_index, self.latents, self.levels = (_extend(x, 0, 1) for x in (self.frame_index, self.latents, self.levels))
        self.tracks.append(None)
        self.lengths.append(-1)
        self.slot_of.append({})
        return len(self.tracks) - 1

    def _allocate(self, tracks: Sequence, capacity: int) -> None:
        entry = next(iter(tracks[0].kv.values()))
        depth, heads, n, head_dim = entry["keys"].shape
        batch, device = len(tracks), entry["keys"].device
        # zeros, not empty: a masked slot still multiplies its (zero) values by a zero weight
        self._set(entry["keys"].new_zeros(depth, batch, heads, capacity * n, head_dim),
                  entry["values"].new_zeros(depth, batch, heads, capacity * n, head_dim))
        self.tokens, self.capacity = n, capacity
        self.frame_index = torch.zeros(batch, capacity, dtype=torch.long, device=device)
        self.latents = entry["latent"].new_zeros(batch, capacity, *entry["latent"].shape)
        self.levels = torch.zeros(batch, capacity, dtype=entry["noise_level"].dtype, device=device)
        self.tracks, self.lengths = [None] * batch, [-1] * batch
        self.slot_of = [{} for _ in range(batch)]

    def _resize(self, capacity: int) -> None:
        """`capacity` slots per row: new ones are zeros, dropped ones (at the end) unused; one copy of the
        buffer, while contexts grow or after resets."""
        more = capacity - self.capacity
        self._set(_extend(self._keys, 3, more * self.tokens), _extend(self._values, 3, more * self.tokens))
        self.frame_index, self.latents, self.levels = (_extend(x, 1, more) for x in (self.frame_index, self.latents, self.levels))
        self.capacity = capacity

    def _set(self, keys: Tensor, values: Tensor) -> None:
        """(depth, B, heads, S * N, head_dim) buffers; per-layer views by indexing, not unbind: the forward writes into them."""
        self._keys, self._values = keys, values
        self.keys, self.values = [keys[i] for i in range(len(keys))], [values[i] for i in range(len(values))]

    def _load(self, b: int, track, selection: Sequence[int]) -> None:
        n = self.tokens
        self.tracks[b] = None  # half-loaded until the end
        self._keys[:, b].zero_()  # nothing of the row's last track stays, even masked (0 x inf is NaN)
        self._values[:, b].zero_()
        for j, i in enumerate(selection):
            e = track.kv[i]
            self._keys[:, b, :, j * n:(j + 1) * n] = e["keys"]
            self._values[:, b, :, j * n:(j + 1) * n] = e["values"]
            self.frame_index[b, j], self.latents[b, j], self.levels[b, j] = e["frame_index"], e["latent"], e["noise_level"]
        self.tracks[b], self.lengths[b] = track, track.length
        self.slot_of[b] = {i: j for j, i in enumerate(selection)}
        self.reloads += 1


def _extend(x: Tensor, dim: int, count: int) -> Tensor:
    """`x` with `count` zero entries appended along `dim` (count < 0: that many dropped from the end), a new tensor."""
    if count < 0:
        return x.narrow(dim, 0, x.shape[dim] + count).contiguous()
    shape = list(x.shape)
    shape[dim] = count
    return torch.cat([x, x.new_zeros(shape)], dim=dim)
