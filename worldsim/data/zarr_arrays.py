"""Array-level zarr helpers of the episode store (`worldsim.data.store`): opening an array with errors that
name the store, creating codecs and a new store's arrays, growing arrays, and reading or writing rows of
several arrays at once. With the store, the only module that imports zarr."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import zarr
import zarr.codecs

from worldsim.data.layout import StoreError, StoreLayout, row_nbytes

try:  # a zarr internal, used only by `concurrent_rows`'s fast path
    from zarr.core.sync import sync as _zarr_sync
except ImportError:  # pragma: no cover - another zarr: the public API instead
    _zarr_sync = None


_ATOMIC_ZARR = (3, 1, 3)  # first zarr release whose LocalStore writes files atomically


def zarr_internals_missing(arr: Any) -> list[str]:
    """The zarr internals that `concurrent_rows`'s fast path needs and `arr` (a zarr.Array) lacks; [] when none.

    Internals can vanish in any zarr release; tests/data/test_store.py fails on a non-empty list, so
    an upgrade that drops them is noticed instead of silently reading at the public API's pace.
    """
    missing = [] if _zarr_sync is not None else ["zarr.core.sync.sync"]
    async_array = getattr(arr, "_async_array", None)
    if async_array is None:
        return missing + ["zarr.Array._async_array"]
    return missing + [f"zarr.Array._async_array.{m}" for m in ("getitem", "setitem") if not callable(getattr(async_array, m, None))]


def concurrent_rows(arrays: list[Any], rows: slice, values: list[np.ndarray] | None = None,
                    fast: bool = True) -> list[Any]:
    """Read (`values` None) or write `rows` of several zarr arrays at once; the rows read, one per array.

    zarr's public API makes one blocking round trip to its IO loop per array. Its async arrays
    (``Array._async_array``, driven by ``zarr.core.sync.sync``) let every array share one, which for a
    16-frame window of every array takes about 60% of the time. Those are zarr internals: where they
    are missing (or `fast` is False), the public API is used one array at a time, with the same result.
    """
    if fast and not any(zarr_internals_missing(a) for a in arrays):
        async def run() -> list[Any]:
            if values is None:
                return await asyncio.gather(*(a._async_array.getitem(rows) for a in arrays))
            return await asyncio.gather(*(a._async_array.setitem(rows, v) for a, v in zip(arrays, values)))

        return _zarr_sync(run())
    if values is None:
        return [a[rows] for a in arrays]
    for a, v in zip(arrays, values):
        a[rows] = v
    return [None] * len(arrays)


def dimension_names(key: str, inner: int) -> tuple[str, ...]:
    """Names of a data array's dimensions: rows first ("row"), then the key's own (obs: y, x, channel).

    Each array gets its own inner names (``<key>_dim1``, ...) because arrays of different widths must not
    share a dimension name in xarray; only "row" is shared.
    """
    if key == "obs":
        return ("row", "y", "x", "channel")
    base = key.replace("/", "_")
    return ("row", *(f"{base}_dim{i + 1}" for i in range(inner)))


def ensure_rows(arr: Any, rows: int) -> None:
    """Grow `arr` along axis 0 to hold at least `rows` rows, by at least half its size in whole chunks.

    Each resize rewrites the array's metadata file; growing geometrically makes that rare, and rows
    past the committed episodes are never read (`close` trims them).
    """
    if arr.shape[0] >= rows:
        return
    chunk = arr.chunks[0]
    target = max(rows, int(arr.shape[0] * 1.5))
    arr.resize((-(-target // chunk) * chunk, *arr.shape[1:]))


def blosc(shuffle: str) -> Any:
    return zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle=shuffle)


def open_array(group: Any, name: str, path: Path, suggest_repair: bool) -> Any:
    """The zarr array `name` of the store's group; StoreError naming the store and the file when it is missing or
    its metadata (``<name>/zarr.json``) does not read."""
    try:
        return group[name]
    except KeyError:
        raise StoreError(f"{path}: the store is missing the array {name}; it is corrupt") from None
    except OSError:  # no permission, ...: the CLI names the path
        raise
    except Exception as e:  # noqa: BLE001 - zarr passes on json's (or its own) error for a torn metadata file
        meta = path / name / "zarr.json"
        hint = (f"; restore {meta} from a copy of the store (`worldsim repair {path} NEW_STORE` copies the intact "
                "episodes of a damaged store, but it needs every array's metadata)" if suggest_repair else
                f"; restore {meta} from a copy of the store (repair needs every array's metadata)")
        raise StoreError(f"{path}: the metadata of {name} ({meta}) does not read ({type(e).__name__}: {str(e)[:120]}); "
                         f"the store is corrupt and was left untouched" + hint) from None


def require_atomic_zarr() -> None:
    version = tuple(int(p) for p in zarr.__version__.split(".")[:3] if p.isdigit())
    if version < _ATOMIC_ZARR:
        raise StoreError(
            f"writing episode stores needs zarr >= {'.'.join(map(str, _ATOMIC_ZARR))} (atomic file writes); "
            f"zarr {zarr.__version__} is installed"
        )


SMALL_CHUNK_ROWS = 4096  # rows per chunk of the small per-step arrays (action, reward, flags, state)
SMALL_CHUNK_BYTES = 1 << 20  # but no more than 1 MiB per chunk for wide state arrays
EPISODE_ENDS_CHUNK = 4096
# Chunk files named c.<i>.0.0.0 in one folder: "/" would add a folder per chunk and per dimension.
CHUNK_KEYS = {"name": "default", "separator": "."}


def create_arrays(group: Any, layout: StoreLayout, chunk_frames: int) -> None:
    """The empty arrays of a new store in `group`: `data/<key>` for every row array of `layout` (obs in chunks
    of `chunk_frames` frames, the small per-step arrays in chunks of up to 4096 rows and 1 MiB) and
    `meta/episode_ends`, each chunk checksummed."""
    data = group.create_group("data")
    for key, (shape, dtype) in layout.row_specs().items():
        if key == "obs":
            rows, codec = chunk_frames, blosc("bitshuffle")
        else:
            budget = SMALL_CHUNK_BYTES // max(1, row_nbytes(shape, dtype))
            rows, codec = max(1, min(SMALL_CHUNK_ROWS, budget)), blosc("shuffle")
        data.create_array(
            key, shape=(0, *shape),
            chunks=(rows, *shape),
            dtype=dtype,
            compressors=[codec, zarr.codecs.Crc32cCodec()],  # a garbled chunk fails its checksum, not silently
            fill_value=0,
            chunk_key_encoding=CHUNK_KEYS,
            dimension_names=dimension_names(key, len(shape)),  # xarray.open_zarr needs them
        )
    group.create_group("meta").create_array(
        "episode_ends",
        shape=(0,),
        chunks=(EPISODE_ENDS_CHUNK,),
        dtype="int64",
        compressors=[blosc("shuffle"), zarr.codecs.Crc32cCodec()],
        chunk_key_encoding=CHUNK_KEYS,
        dimension_names=("episode",),
    )
