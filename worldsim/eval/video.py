"""Side-by-side video strips (real | simulated) as mp4 through PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def side_by_side(rows: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Frames of equal length placed left to right: each (T, H, W, 3) -> (T, H, sum W + gaps, 3)."""
    t = len(rows[0])
    if any(len(r) != t or r.shape[1] != rows[0].shape[1] for r in rows):
        raise ValueError(f"strips need equal lengths and heights, got {[r.shape for r in rows]}")
    sep = np.full((t, rows[0].shape[1], gap, 3), 255, np.uint8)
    parts = []
    for i, r in enumerate(rows):
        parts += [r] if i == 0 else [sep, r]
    return np.concatenate(parts, axis=2)


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 15.0, scale: int = 4) -> Path:
    """Write uint8 (T, H, W, 3) frames to an H.264 mp4, upscaled by `scale` (nearest) and padded to even sizes."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"write_mp4 takes uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = frames.shape[1] + frames.shape[1] % 2, frames.shape[2] + frames.shape[2] % 2
    frames = np.pad(frames, ((0, 0), (0, h - frames.shape[1]), (0, w - frames.shape[2]), (0, 0)))
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=max(1, round(fps)))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
