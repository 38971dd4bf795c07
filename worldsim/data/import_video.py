"""Turn a folder of mp4 files into episodes, with Minecraft VPT actions where a .jsonl sits beside a video.

The VPT contractor format (OpenAI's Video PreTraining data) has one JSON object per video frame:
``{"mouse": {"dx": .., "dy": .., "buttons": [0, ..]}, "keyboard": {"keys": ["key.keyboard.w", ..]},
...}``; line i is what the player did after seeing frame i, so it leads to frame i + 1. We map it
to a Dict space: `buttons` (MultiDiscrete of 0/1 per named button) and `camera` (pitch, yaw in
degrees, mouse pixels times 360 / 2400 as VPT does). When frames are dropped to lower the frame
rate, the actions between two kept frames are merged: buttons held in any of them, camera summed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from gymnasium import spaces
from PIL import Image
from tqdm.auto import tqdm

from worldsim.config import ImportVideoConfig
from worldsim.data.store import EpisodeStore, StoreError

VPT_KEYS = {
    "key.keyboard.w": "forward", "key.keyboard.s": "back", "key.keyboard.a": "left", "key.keyboard.d": "right",
    "key.keyboard.space": "jump", "key.keyboard.left.shift": "sneak", "key.keyboard.left.control": "sprint",
    "key.keyboard.q": "drop", "key.keyboard.e": "inventory", "key.keyboard.f": "swapHands",
    "key.keyboard.escape": "ESC", **{f"key.keyboard.{i}": f"hotbar.{i}" for i in range(1, 10)},
}
VPT_MOUSE_BUTTONS = {0: "attack", 1: "use", 2: "pickItem"}
VPT_BUTTONS = list(dict.fromkeys([*VPT_KEYS.values(), *VPT_MOUSE_BUTTONS.values()]))
VPT_CAMERA_DEGREES_PER_PIXEL = 360.0 / 2400.0
VPT_CAMERA_LIMIT = 180.0  # degrees per step; larger jumps are clipped
VPT_ACTION_SPACE = spaces.Dict({
    "buttons": spaces.MultiDiscrete([2] * len(VPT_BUTTONS)),
    "camera": spaces.Box(-VPT_CAMERA_LIMIT, VPT_CAMERA_LIMIT, shape=(2,), dtype=np.float32),
})


@dataclass
class ImportResult:
    path: str
    videos: int
    episodes: int
    frames: int
    with_actions: int  # episodes that carry VPT actions
    skipped: list[str] = field(default_factory=list)  # "video: why" for each video left out (on_error=skip)


def vpt_action(line: dict) -> tuple[np.ndarray, np.ndarray]:
    """One VPT jsonl record -> (buttons int64 (len(VPT_BUTTONS),) of 0/1, camera float32 (2,) pitch, yaw in degrees)."""
    buttons = np.zeros(len(VPT_BUTTONS), dtype=np.int64)
    for key in line.get("keyboard", {}).get("keys", []):
        if key in VPT_KEYS:
            buttons[VPT_BUTTONS.index(VPT_KEYS[key])] = 1
    mouse = line.get("mouse", {})
    for b in mouse.get("buttons", []):
        if b in VPT_MOUSE_BUTTONS:
            buttons[VPT_BUTTONS.index(VPT_MOUSE_BUTTONS[b])] = 1
    camera = np.array([mouse.get("dy", 0.0), mouse.get("dx", 0.0)], dtype=np.float32) * VPT_CAMERA_DEGREES_PER_PIXEL
    return buttons, camera


def read_vpt_actions(path: Path) -> list[dict]:
    records = []
    with open(path) as f:
        for n, text in enumerate(f, 1):
            text = text.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise StoreError(f"{path}:{n} is not valid JSON ({e.msg}); expected one VPT action object per line") from None
            if not isinstance(record, dict) or not all(isinstance(record.get(k, {}), dict) for k in ("mouse", "keyboard")):
                raise StoreError(f"{path}:{n} is not a VPT action object ({{\"mouse\": {{...}}, \"keyboard\": {{...}}}}), "
                                 f"got {text[:60]}")
            records.append(record)
    return records


def _prepare(frame: np.ndarray, size: int, square: bool) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, centre-cropped to a square first when `square`."""
    h, w = frame.shape[:2]
    if square and h != w:
        m = min(h, w)
        top, left = (h - m) // 2, (w - m) // 2
        frame = frame[top : top + m, left : left + m]
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR))


def _decode(path: Path, fps: float | None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (source frame index, rgb (H, W, 3) uint8) for every frame: rgb for those kept at `fps` (all when
    None), None for those the resampling drops."""
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise StoreError(f"cannot read video {path}: {e}") from None
    with container:
        if not container.streams.video:
            raise StoreError(f"{path} holds no video stream")
        stream = container.streams.video[0]
        next_time = 0.0  # time of the next output frame; a source slower than `fps` keeps every frame
        i = -1
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except av.error.FFmpegError as e:
                raise StoreError(f"cannot decode video {path} after frame {i}: {e}") from None
            i += 1
            t = float(frame.time) if frame.time is not None else i / float(stream.average_rate or 1)
            if fps is None or t + 1e-3 >= next_time:
                if fps is not None:
                    next_time += 1.0 / fps
                yield i, frame.to_ndarray(format="rgb24")
            else:
                yield i, None  # dropped by the resampling (the caller still counts it)


def video_fps(path: Path) -> float:
    import av

    try:
        with av.open(str(path)) as c:
            rate = c.streams.video[0].average_rate if c.streams.video else None
    except av.error.FFmpegError as e:
        raise StoreError(f"cannot read video {path}: {e}") from None
    if not rate:
        raise StoreError(f"{path} does not declare a frame rate; pass fps=")
    return float(rate)


def _first_fps(videos: list[Path], on_error: str) -> float:
    """The frame rate of the first video (of the first readable one, with on_error=skip)."""
    for video in videos:
        try:
            return video_fps(video)
        except StoreError:
            if on_error != "skip" or video == videos[-1]:
                raise
    raise AssertionError("unreachable")


def import_videos(cfg: ImportVideoConfig) -> ImportResult:
    """Import every .mp4 under `cfg.src` into the store at `cfg.out` (created, or appended to)."""
    src = Path(cfg.src)
    if not src.is_dir():
        raise StoreError(f"{src} is not a folder of videos")
    videos = sorted(src.rglob("*.mp4"))
    if not videos:
        raise StoreError(f"no .mp4 files under {src}")
    if cfg.actions not in ("auto", "none"):
        raise ValueError(f"actions must be 'auto' or 'none', got {cfg.actions!r}")
    if cfg.max_frames is not None and cfg.max_frames < 2:
        raise ValueError(f"max_frames must be at least 2, got {cfg.max_frames}")
    if cfg.on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', got {cfg.on_error!r}")
    action_files = {v: v.with_suffix(".jsonl") for v in videos if cfg.actions == "auto" and v.with_suffix(".jsonl").exists()}
    fps = cfg.fps or _first_fps(videos, cfg.on_error)

    if Path(cfg.out).exists():
        store = EpisodeStore.open(cfg.out, mode="a")
        problem = None
        if tuple(store.frame_size) != (cfg.size, cfg.size):
            problem = f"cannot append to {cfg.out}: its frames are {tuple(store.frame_size)}, not {(cfg.size, cfg.size)}"
        elif action_files and store.action_space != VPT_ACTION_SPACE:
            problem = f"cannot append VPT actions to {cfg.out}: its action space is {store.action_space}"
        if problem is not None:
            store.close()  # releases the writer lock: the store stays usable in this process
            raise StoreError(problem)
    else:
        store = EpisodeStore.create(
            cfg.out, env_id="video", frame_size=(cfg.size, cfg.size), fps=fps,
            action_space=VPT_ACTION_SPACE if action_files else None,
            source={"kind": "import-video", "src": str(src.resolve()), "format": "vpt-jsonl" if action_files else None},
        )
    episodes = frames = with_actions = imported = 0
    skipped: list[str] = []
    with store:
        for video in tqdm(videos, unit="video", desc="import", disable=not cfg.progress):
            # Each video is decoded and checked whole before any of it is written: a bad one leaves nothing behind.
            try:
                records = read_vpt_actions(action_files[video]) if video in action_files else None
                pieces = list(_episodes(video, records, cfg, fps, store.action_space is not None))
            except StoreError as e:
                if cfg.on_error == "skip":
                    skipped.append(f"{video}: {e}")
                    continue
                raise StoreError(f"{e} (nothing of it was written; the {imported} videos before it are in {cfg.out}: "
                                 "fix or move it and import the rest, or pass on_error=skip)") from None
            for episode in pieces:
                store.append_episode(**episode)
                episodes += 1
                frames += len(episode["obs"])
                with_actions += int(episode.get("action") is not None)
            imported += 1
    return ImportResult(str(cfg.out), imported, episodes, frames, with_actions, skipped)


def _episodes(video: Path, records: list[dict] | None, cfg: ImportVideoConfig, fps: float, store_has_actions: bool):
    """Yield append_episode keyword arguments for one video, cut into pieces of at most max_frames."""
    limit = cfg.max_frames or np.iinfo(np.int64).max
    obs, acts, has = [], [], []
    last_source = None
    n = 0  # frames in the video
    for source, rgb in _decode(video, fps if cfg.fps else None):
        n = source + 1
        if rgb is None:
            continue
        if len(obs) == limit:
            yield _episode(obs, acts, has, store_has_actions)
            obs, acts, has = [], [], []
        action, present = None, False
        if records is not None and obs and last_source is not None:
            # line i leads to frame i + 1: frame `source` follows lines last_source .. source - 1
            lines = records[last_source:source]
            if len(lines) == source - last_source:
                parts = [vpt_action(r) for r in lines]
                buttons = np.max([p[0] for p in parts], axis=0)
                camera = np.clip(np.sum([p[1] for p in parts], axis=0), -VPT_CAMERA_LIMIT, VPT_CAMERA_LIMIT)
                action, present = {"buttons": buttons, "camera": camera.astype(np.float32)}, True
        obs.append(_prepare(rgb, cfg.size, cfg.square))
        acts.append(action)
        has.append(present)
        last_source = source
    if records is not None and n:
        if len(records) not in (n - 1, n):
            raise StoreError(f"{video.with_suffix('.jsonl')} has {len(records)} action lines for the {n} frames of "
                             f"{video.name} (expected {n - 1} or {n}: one per frame)")
    if len(obs) >= 2 or (obs and cfg.max_frames is None):
        yield _episode(obs, acts, has, store_has_actions)


def _episode(obs, acts, has, store_has_actions: bool) -> dict:
    """Keyword arguments of `EpisodeStore.append_episode`; row 0's action is dropped (nothing led to it)."""
    steps = len(obs) - 1
    truncated = np.zeros(steps, dtype=bool)
    if steps:
        truncated[-1] = True  # the clip ends; the world did not
    episode = dict(obs=np.stack(obs), truncated=truncated)
    if store_has_actions and any(has[1:]):
        episode["action"] = acts[1:]  # None where no action was recorded
    return episode
