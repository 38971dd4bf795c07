"""A torch Dataset of fixed-length windows read from an episode store."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from worldsim.data.store import EpisodeStore
from worldsim.data.windows import window_span, window_starts


class WindowDataset(Dataset):
    """Every window of `window` frames (every `frame_skip` rows) inside one episode of a store.

    Item ``i`` is a dict of tensors for the window starting at row ``starts[i]``:
    "obs" uint8 (T, H, W, 3) in [0, 255]; "action" (T, D) packed (int64 or float32; (T, 0)
    float32 for action-free stores), "action"[t] being the action that led to frame t;
    "has_action" bool (T,); "reward" float32 (T,); "terminated" / "truncated" bool (T,);
    "state/<key>" (T, *shape); and "start", the window's first row (a Python int).
    With ``frame_skip > 1`` every key is taken at the window's frames only (the actions and
    rewards of skipped rows are not returned).

    The store is opened lazily in each process (and reopened after a fork), so the dataset works
    with ``DataLoader(num_workers=...)`` under fork or spawn and with ``DistributedSampler``. Each
    item reads one row slice per array, i.e. only the chunks that overlap the window. The set of
    windows is fixed at construction: episodes committed later (by a writer still running) are
    not seen. `episodes` keeps only the windows of those episodes (indices into the store).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        window: int,
        frame_skip: int = 1,
        stride: int = 1,
        keys: Sequence[str] | None = None,
        episodes: Sequence[int] | None = None,
    ) -> None:
        self.path = Path(path)
        self.window, self.frame_skip = int(window), int(frame_skip)
        store = EpisodeStore.open(self.path, "r")
        available = [*store.keys(), *([] if "action" in store.keys() else ["action"])]
        self.keys = list(available if keys is None else keys)
        unknown = sorted(set(self.keys) - set(available))
        if unknown:
            raise KeyError(f"unknown keys {unknown} for store {self.path}; available: {available}")
        self.episode_ends = store.episode_ends  # int64 (E,) at construction time
        self.starts = window_starts(self.episode_ends, self.window, self.frame_skip, stride)  # int64 (K,)
        if episodes is not None:  # only windows of these episodes (e.g. all but the held-out ones)
            episode_of = np.searchsorted(self.episode_ends, self.starts, side="right")  # (K,)
            self.starts = self.starts[np.isin(episode_of, np.asarray(list(episodes), dtype=np.int64))]
            if len(self.starts) == 0:
                raise ValueError(f"no window of {self.window} frames fits in the chosen episodes of {self.path}")
        self._store: EpisodeStore | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range: the dataset has {len(self)} windows")
        start = int(self.starts[i])
        stop = start + window_span(self.window, self.frame_skip)
        rows = self._open().read_rows(self.keys, start, stop)  # {key: (span, ...)}
        item: dict[str, Any] = {
            key: torch.from_numpy(np.ascontiguousarray(value[:: self.frame_skip])) for key, value in rows.items()
        }
        item["start"] = start
        return item

    def _open(self) -> EpisodeStore:
        if self._store is None or self._pid != os.getpid():
            self._store = EpisodeStore.open(self.path, "r")
            self._pid = os.getpid()
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        # Workers (spawn) get the parameters and window starts, never an open store.
        state = self.__dict__.copy()
        state["_store"], state["_pid"] = None, None
        return state
