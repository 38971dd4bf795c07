"""TensorBoard logging of a run (rank 0 only): scalars, and real-vs-model videos.

Videos go in twice: as an image strip in TensorBoard (frames left to right, real on the left half
of each frame, the model on the right; TensorBoard's own video summary needs moviepy, which
worldsim does not depend on) and as an mp4 under ``<run>/videos/`` (`worldsim.video.write_mp4`, upscaled 2x).
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange


class RunLogger:
    """Writes to ``<run>/tensorboard``; every method is a no-op when disabled (other ranks)."""

    def __init__(self, run_dir: Path, enabled: bool, fps: float = 8.0) -> None:
        self.run_dir, self.enabled, self.fps = Path(run_dir), enabled, fps
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def video(self, step: int, tag: str, video: torch.Tensor) -> Path | None:
        """uint8 (T, H, W, 3): a strip image in TensorBoard and ``videos/<tag>_<step>.mp4``."""
        if self.writer is None:
            return None
        self.writer.add_image(tag, rearrange(video, "t h w c -> c h (t w)"), step)
        from worldsim.video import write_mp4

        path = self.run_dir / "videos" / f"{tag.replace('/', '_')}_{step:08d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_mp4(path, video.numpy(), self.fps, scale=2)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
