"""mp4 writing with PyAV (libx264): one video, or real and simulated frames side by side."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_mp4(path: str | os.PathLike, frames: np.ndarray | Sequence[np.ndarray], fps: float = 15.0) -> Path:
    """Write uint8 frames (T, H, W, 3) to an H.264 mp4; odd sizes are padded to even (yuv420p needs it)."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError("no frames to write")
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


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 2) -> np.ndarray:
    """uint8 (T, H, W, 3) pairs -> (T, H, 2W + gap, 3), left | white gap | right; the shorter decides T."""
    t = min(len(left), len(right))
    left, right = np.asarray(left[:t]), np.asarray(right[:t])
    if left.shape[1:] != right.shape[1:]:
        raise ValueError(f"frames differ in size: {left.shape[1:]} and {right.shape[1:]}")
    bar = np.full((t, left.shape[1], gap, 3), 255, np.uint8)
    return np.concatenate([left, bar, right], axis=2)


def read_mp4(path: str | os.PathLike) -> np.ndarray:
    """Decode an mp4 to uint8 (T, H, W, 3) (for tests and checks)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
