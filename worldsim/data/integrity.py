"""Integrity of an episode store: find damaged chunks (`verify`), copy the intact episodes out (`repair`).

`verify` reads every chunk of every array and names the episodes a damaged one touches: a chunk file
that is missing (zarr would read it as zeros: black frames, zero actions) or that does not decode (a
garbled file fails blosc, or the crc32c checksum of stores written with one).

`repair` never changes the damaged store. It opens it without trusting its index, finds the episode
boundaries (from meta/episode_ends where that reads and rises strictly, else from the rows themselves:
row 0 of every episode has no action, and only an episode's last row may be terminated or truncated),
and appends every committed episode that no damaged chunk touches to a NEW store, row for row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.data.layout import StoreError
from worldsim.data.store import EpisodeStore

__all__ = ["verify", "repair"]


def _scan(store: EpisodeStore, progress: bool) -> list[tuple[str, int, int, str]]:
    """(array, start, stop, error) of every damaged chunk within the rows each array holds."""
    from tqdm import tqdm

    items = store.chunked_arrays()
    bar = tqdm(total=sum(-(-rows // arr.chunks[0]) for _, arr, _, rows in items), desc=f"verify {store.path.name}",
               unit="chunk", disable=not progress)
    damaged = []
    for key, arr, folder, rows in items:
        step = arr.chunks[0]
        for c in range(-(-rows // step)):
            start, stop = c * step, min(rows, (c + 1) * step)
            chunk_key = arr.metadata.encode_chunk_key((c,) + (0,) * (arr.ndim - 1))
            error = None
            if not (folder / chunk_key).is_file():
                if not store.skips_zero_chunks or key in ("obs", "meta/episode_ends"):
                    error = f"chunk file {chunk_key} is missing (it would read as zeros)"
            else:
                try:
                    store.read_raw(key, start, stop)
                except Exception as e:  # noqa: BLE001 - any decode failure is damage
                    error = f"{type(e).__name__}: {str(e)[:160]}"
            if error:
                damaged.append((key, start, stop, error))
            bar.update(1)
    bar.close()
    return damaged


def verify(store: EpisodeStore, progress: bool = False) -> list[dict[str, Any]]:
    """Read every committed chunk of every array; one problem per damaged chunk, [] when all is well.

    A problem is {"array", "rows": [start, stop), "episodes": [...], "error"}. Stores written before
    every chunk was kept skipped all-zero chunks; there only missing chunks of obs and episode_ends count.
    """
    problems = []
    for key, start, stop, error in _scan(store, progress):
        episodes = list(range(store.num_episodes))[start:stop] if key == "meta/episode_ends" else \
            list(range(store.episode_of(start), store.episode_of(stop - 1) + 1))
        problems.append({"array": key, "rows": [start, stop], "episodes": episodes, "error": error})
    return problems


def _boundaries(store: EpisodeStore, rows: int, committed: int, bad_index: bool) -> tuple[np.ndarray, str]:
    """Exclusive end rows of the first `committed` episodes, and where they came from."""
    if not bad_index:
        ends = store.read_raw("meta/episode_ends", 0, committed).astype(np.int64)
        if not committed or not (np.any(np.diff(ends) <= 0) or ends[0] < 1 or ends[-1] > rows):
            return ends, "meta/episode_ends"
    try:
        ended = store.read_raw("terminated", 0, rows) | store.read_raw("truncated", 0, rows)
    except Exception:  # noqa: BLE001 - damaged flags: rebuilt from the actions alone
        ended = None
    if store.action_space is not None:
        try:
            has = store.read_raw("has_action", 0, rows)
        except Exception as e:  # noqa: BLE001
            raise StoreError(f"{store.path}: neither meta/episode_ends nor data/has_action reads ({e}); the episode "
                             "boundaries cannot be rebuilt") from None
        starts = np.flatnonzero(~has)
        if len(starts) == 0 or starts[0] != 0:
            raise StoreError(f"{store.path}: row 0 carries an action, so data/has_action cannot mark episode starts")
        ends = list(starts[1:])
        # the last episode ends at its first ended row (a killed writer's tail past it is not committed)
        tail = np.flatnonzero(ended[starts[-1]:]) if ended is not None else np.zeros(0, int)
        if len(tail):
            ends.append(starts[-1] + tail[0] + 1)
        return np.asarray(ends[:committed], dtype=np.int64), "rebuilt from data/has_action (row 0 of an episode has no action)"
    if ended is None:
        raise StoreError(f"{store.path}: an action-free store whose index and end flags are both damaged: the episode "
                         "boundaries cannot be rebuilt")
    return (np.flatnonzero(ended)[:committed] + 1).astype(np.int64), "rebuilt from data/terminated|truncated"


def repair(src: str | os.PathLike, dst: str | os.PathLike, progress: bool = False) -> dict[str, Any]:
    """Copy every intact committed episode of the store at `src` into a new store at `dst` (which must not exist).

    `src` is only read. Returns {"source", "out", "index": where the boundaries came from, "episodes": E
    committed, "kept": [...], "dropped": {episode: reason}, "frames": rows copied}.
    """
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise StoreError(f"{dst} already exists: repair writes a new store and never overwrites one")
    if dst.resolve() == src.resolve():
        raise StoreError("repair writes a new store: give another path than the damaged one")
    with EpisodeStore.open(src, "r", check_index=False) as store:
        damaged = _scan(store, progress)
        rows = min(r for key, _, _, r in store.chunked_arrays() if key != "meta/episode_ends")
        attrs = store.attrs
        committed = int(attrs["committed_episodes"])
        bad_index = any(key == "meta/episode_ends" for key, *_ in damaged)
        ends, index = _boundaries(store, rows, committed, bad_index)
        starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        dropped: dict[int, str] = {}
        if len(ends) < committed:
            for e in range(len(ends), committed):
                dropped[e] = "its end row could not be found"
        for key, a, b, error in damaged:
            if key == "meta/episode_ends":
                continue
            for e in np.flatnonzero((starts < b) & (ends > a)):
                dropped.setdefault(int(e), f"{key} rows [{a}, {b}): {error}")
        kept = [e for e in range(len(ends)) if e not in dropped]
        source = dict(attrs.get("source") or {})
        source["repaired_from"] = str(src)
        out = EpisodeStore.create(
            dst, env_id=attrs["env_id"], frame_size=tuple(attrs["frame_size"]), fps=attrs["fps"],
            action_space=store.action_space, env_kwargs=attrs.get("env_kwargs"), source=source,
            chunk_frames=next(arr.chunks[0] for key, arr, _, _ in store.chunked_arrays() if key == "obs"),
            state_spec={k: (tuple(v["shape"]), np.dtype(v["dtype"])) for k, v in (attrs.get("state_spec") or {}).items()},
        )
        frames = 0
        with out:
            for e in tqdm(kept, desc=f"repair -> {dst.name}", unit="episode", disable=not progress):
                a, b = int(starts[e]), int(ends[e])
                out.append_rows({key: store.read_raw(key, a, b) for key in store.keys()})
                frames += b - a
    return {"source": str(src), "out": str(dst), "index": index, "episodes": committed, "kept": kept,
            "dropped": {int(k): v for k, v in sorted(dropped.items())}, "frames": frames}
