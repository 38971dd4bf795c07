"""A summary of an episode store: what `worldsim info STORE` prints."""

from __future__ import annotations

from typing import Any

import numpy as np

from worldsim.data.store import EpisodeStore


def describe(store: EpisodeStore) -> dict[str, Any]:
    """Episodes, frames, spaces, sizes on disk and compression of `store`, as JSON-ready values."""
    lengths = np.diff(np.concatenate([[0], store.episode_ends])) if store.num_episodes else np.zeros(0, int)
    stored, raw = store.nbytes_stored, store.nbytes
    has_action = store.read("has_action", 0, store.num_frames) if store.num_frames else np.zeros(0, bool)
    return {
        "path": str(store.path),
        "env_id": store.env_id,
        "episodes": int(store.num_episodes),
        "frames": int(store.num_frames),
        "episode_length": {
            "min": int(lengths.min()) if len(lengths) else 0,
            "mean": float(lengths.mean()) if len(lengths) else 0.0,
            "max": int(lengths.max()) if len(lengths) else 0,
        },
        "frames_with_action": int(has_action.sum()),
        "frame_size": list(store.frame_size),
        "fps": float(store.fps),
        "action_space": str(store.action_space) if store.action_space is not None else None,
        "keys": store.keys(),
        "bytes_on_disk": int(stored),
        "bytes_uncompressed": int(raw),
        "compression_ratio": float(raw / stored) if stored else None,
        "uncommitted_rows": int(store.uncommitted_rows),  # left by a killed writer; trimmed by the next append
    }


def format_info(d: dict[str, Any]) -> str:
    """Human-readable lines for `describe`'s result."""
    mib = 1 / 2**20
    ratio = f"{d['compression_ratio']:.1f}x" if d["compression_ratio"] else "-"
    lengths = d["episode_length"]
    return "\n".join([
        f"store          {d['path']}",
        f"source         {d['env_id']}",
        f"episodes       {d['episodes']}",
        f"frames         {d['frames']}  (episode length min {lengths['min']}, mean {lengths['mean']:.1f}, max {lengths['max']})",
        f"with action    {d['frames_with_action']} frames",
        f"frame size     {d['frame_size'][0]}x{d['frame_size'][1]} RGB at {d['fps']:g} fps",
        f"action space   {d['action_space'] or 'none (action-free video)'}",
        f"arrays         {', '.join(d['keys'])}",
        f"on disk        {d['bytes_on_disk'] * mib:.2f} MiB  (uncompressed {d['bytes_uncompressed'] * mib:.2f} MiB, ratio {ratio})",
    ] + ([f"uncommitted    {d['uncommitted_rows']} rows past the last episode (a writer was killed; "
          "ignored, and trimmed by the next append)"] if d["uncommitted_rows"] else []))
