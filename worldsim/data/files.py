"""File-system guards of an episode store opened for appending: the write probe and the one-writer lock."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from worldsim.data.layout import StoreError


def probe_writable(path: Path) -> None:
    """Raise the OSError (read-only file system, no permission) that a write into the store's data would meet."""
    probe = path / "data" / f".write-probe-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
    except FileNotFoundError:
        return  # no data folder: the open below names the damage
    probe.unlink()


def lock_writer(path: Path) -> int | None:
    """Hold an exclusive lock on the store's directory so two writers never append to one store.

    The lock goes with the process (a killed writer releases it); locking the directory itself
    leaves no extra file for zarr to trip over.
    """
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: one writer is the user's promise
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"{path} is already open for appending by another process") from None
    return fd
