"""Video files with PyAV (libx264): writing frames as mp4, strips side by side, reading back."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_mp4(path: str | os.PathLike, frames: np.ndarray | Sequence[np.ndarray], fps: float = 15.0,
              scale: int = 1) -> Path:
    """Write uint8 frames (T, H, W, 3) to an H.264 mp4, upscaled `scale` times (nearest); odd sizes padded to even."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError("no frames to write")
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=max(int(round(fps)), 1))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def side_by_side(*strips: np.ndarray, gap: int = 2) -> np.ndarray:
    """uint8 (T, H, W_i, 3) strips placed left to right with white gaps -> (T, H, sum W_i + gaps, 3).

    The shortest strip decides T; every strip must have the same height.
    """
    if not strips:
        raise ValueError("side_by_side needs at least one strip")
    t = min(len(s) for s in strips)
    strips = tuple(np.asarray(s[:t]) for s in strips)
    if any(s.shape[1] != strips[0].shape[1] for s in strips):
        raise ValueError(f"strips differ in height: {[s.shape[1:] for s in strips]}")
    bar = np.full((t, strips[0].shape[1], gap, 3), 255, np.uint8)
    parts = [strips[0]]
    for s in strips[1:]:
        parts += [bar, s]
    return np.concatenate(parts, axis=2)


def read_mp4(path: str | os.PathLike) -> np.ndarray:
    """Decode an mp4 to uint8 (T, H, W, 3) (for tests and checks)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
