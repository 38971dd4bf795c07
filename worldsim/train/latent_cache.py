"""Latents encoded once per autoencoder, kept with the episode store: the DiT never runs the encoder.

Training the DiT used to encode every window with the frozen autoencoder at every step, which on a
CPU cost more than the DiT itself. Here every episode of the store is encoded once, causally from
its first frame, as a rollout that started at the episode's first frame sees it (a window cut from
the middle of an episode starts with a latent that covers k frames and saw the episode before it,
where per-window encoding would have started with one frame alone): latent frame 0 is row 0 alone, latent frame
``j >= 1`` covers rows ``1 + (j-1)k .. jk`` (`worldsim.models.latents`); trailing rows that do not
fill a group of ``k`` are left out. Normalised latents (``autoencoder.normalize``) are stored as
float16 (they are about unit variance, so float16's 11-bit mantissa loses nothing that matters).

Layout: ``<store>/latents/<key>/latents.npy`` (N', C, h, w) float16 and ``index.json``, where
``key`` is the sha256 of the autoencoder's state dict (weights and latent statistics), so a changed
autoencoder never reuses stale latents: it gets a cache of its own. The index records how many of
the store's committed episodes the cache covers; when the store has grown, only the new episodes
are encoded and the file is rewritten whole (to a temporary name, then renamed: a killed build
leaves the old cache or none, never a torn one).

Long episodes are encoded in chunks of latent frames, each started ``overlap`` latent frames early
so the causal convolutions see enough past; the test suite checks that chunks equal one pass.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldsim.data.store import EpisodeStore
from worldsim.envs.probe.physics import BOX
from worldsim.envs.probe.render import world_to_pixel
from worldsim.frames import frames_to_float
from worldsim.models.autoencoder import VideoAutoencoder
from worldsim.models.latents import latent_actions, latent_rewards, latent_terminated, num_real_frames

CACHE_FORMAT = 1
CHUNK_LATENTS = 128  # latent frames encoded per pass of a long episode
OVERLAP_LATENTS = 32  # extra past latent frames per chunk: the tiny preset's encoder still reaches 16-24 back


# training-loss and decoder-only fields: they shape no latent (a new decoder field belongs here, or every key changes)
LOSS_ONLY = ("kl_weight", "l1_weight", "mse_weight", "object_weight", "palette", "palette_weight",
             "decoder_refine_blocks")


def _latent_config(cfg: dict) -> dict:
    """The config fields that decide the latents, numbers as floats (a preset's 4 and an override's 4.0 agree)."""
    return {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for k, v in cfg.items() if k not in LOSS_ONLY}


def autoencoder_key(autoencoder: VideoAutoencoder) -> str:
    """sha256 (hex, first 16 digits) of what decides the latents: config, encoder weights, latent stats.

    The decoder is left out, so a decoder fine-tuned with `freeze_encoder` keeps the cache and the DiTs
    trained on it.
    """
    h = hashlib.sha256(json.dumps(_latent_config(autoencoder.cfg.to_dict()), sort_keys=True).encode())
    for name, tensor in sorted(autoencoder.state_dict().items()):
        if name.startswith("decoder."):
            continue
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def latent_frames_of(rows: int, k: int) -> int:
    """Latent frames of an episode of `rows` rows: 1 + (rows - 1) // k (0 for an empty episode)."""
    return 0 if rows < 1 else 1 + (rows - 1) // k


@dataclass
class LatentCache:
    """Normalised latents of a store's first `episodes` episodes, for one autoencoder.

    ``latents``: float16 (N', C, h, w) memory-mapped; ``episode_ends``: int64 (E,) exclusive end of
    each episode in latent frames; ``row_starts``: int64 (E,) first store row of each episode.
    """

    path: Path
    key: str
    k: int
    latents: np.ndarray
    episode_ends: np.ndarray
    row_starts: np.ndarray

    @property
    def episodes(self) -> int:
        return len(self.episode_ends)

    def episode_latents(self, i: int) -> np.ndarray:
        """float16 (L_i, C, h, w) latents of episode i."""
        begin = int(self.episode_ends[i - 1]) if i else 0
        return self.latents[begin:int(self.episode_ends[i])]


def cache_dir(store_path: str | os.PathLike, key: str) -> Path:
    return Path(store_path) / "latents" / key


@torch.no_grad()
def encode_episode(autoencoder: VideoAutoencoder, frames: np.ndarray, device: torch.device,
                   chunk: int = CHUNK_LATENTS, overlap: int = OVERLAP_LATENTS) -> np.ndarray:
    """uint8 frames (T, H, W, 3) of one episode -> normalised latents float32 (1 + (T-1)//k, C, h, w).

    Chunk c covers latent frames [j0, j0 + chunk); it is encoded from ``overlap`` latent frames
    earlier (its first input frame is row ``js * k``, encoded alone, so later groups line up with
    the episode's own grouping), and the overlap is dropped.
    """
    k = autoencoder.cfg.temporal_factor
    total = latent_frames_of(len(frames), k)
    out = []
    for j0 in range(0, total, chunk):
        j1 = min(total, j0 + chunk)
        js = max(0, j0 - overlap)
        first_row = js * k  # row of chunk latent 0: row 0 for js = 0, else the last row of latent js
        last_row = (j1 - 1) * k  # last row of latent j1 - 1
        x = frames_to_float(torch.from_numpy(np.ascontiguousarray(frames[first_row:last_row + 1]))[None]).to(device)
        z = autoencoder.normalize(autoencoder.encode(x).mode())[0]  # (j1 - js, C, h, w)
        out.append(z[j0 - js:].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def open_cache(store_path: str | os.PathLike, autoencoder: VideoAutoencoder, key: str | None = None) -> LatentCache | None:
    """The cache of this autoencoder for the store, or None when there is none yet (`key`: its `autoencoder_key`, if known)."""
    key = key or autoencoder_key(autoencoder)
    folder = cache_dir(store_path, key)
    index_path = folder / "index.json"
    if not index_path.is_file():
        return None
    index = json.loads(index_path.read_text())
    if index.get("format") != CACHE_FORMAT or index.get("key") != key:
        return None
    latents = np.load(folder / "latents.npy", mmap_mode="r", allow_pickle=False)
    ends = np.asarray(index["episode_ends"], np.int64)
    if latents.shape[0] != (int(ends[-1]) if len(ends) else 0):
        return None  # a build killed between its two renames: rebuilt whole
    return LatentCache(folder, key, int(index["k"]), latents, ends, np.asarray(index["row_starts"], np.int64))


def build_cache(store_path: str | os.PathLike, autoencoder: VideoAutoencoder, device: torch.device | None = None,
                progress: bool = True, key: str | None = None) -> LatentCache:
    """Open this autoencoder's cache for the store, encoding whatever episodes it does not hold yet.

    `key`: the autoencoder's `autoencoder_key` when the caller has it (hashing the weights is not free).
    """
    key = key or autoencoder_key(autoencoder)
    device = device or torch.device("cpu")
    autoencoder = autoencoder.eval()
    if not bool(autoencoder.latent_stats_fitted):
        raise ValueError("the autoencoder has no fitted latent statistics; cache latents only of an exported autoencoder")
    store = EpisodeStore.open(store_path, "r")
    try:
        episodes, ends = store.num_episodes, store.episode_ends
        old = open_cache(store_path, autoencoder, key)
        if old is not None and old.episodes == episodes:
            return old
        if old is not None and old.episodes > episodes:
            raise ValueError(f"latent cache {old.path} holds {old.episodes} episodes but the store has only {episodes}: "
                             "the store was replaced; delete the cache folder and it will be rebuilt")
        k = autoencoder.cfg.temporal_factor
        begins = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        lengths = [latent_frames_of(int(e - b), k) for b, e in zip(begins, ends)]
        latent_ends = np.cumsum(lengths).astype(np.int64)
        _, c, h, w = autoencoder.latent_shape(1, *store.frame_size)
        folder = cache_dir(store_path, key)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"latents.npy.{os.getpid()}.partial"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(int(latent_ends[-1]), c, h, w))
        done = 0
        if old is not None:
            done = old.episodes
            out[:int(old.episode_ends[-1])] = old.latents
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=episodes, initial=done, desc="encode latents", unit="episode", dynamic_ncols=True)
        for i in range(done, episodes):
            frames = store.read("obs", int(begins[i]), int(ends[i]))
            z = encode_episode(autoencoder, frames, device)
            out[int(latent_ends[i]) - lengths[i]:int(latent_ends[i])] = z.astype(np.float16)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        out.flush()
        del out
        os.replace(tmp, folder / "latents.npy")
        index: dict[str, Any] = {"format": CACHE_FORMAT, "key": key, "k": k, "episodes": episodes,
                                 "episode_ends": latent_ends.tolist(), "row_starts": begins.tolist(),
                                 "latent_shape": [c, h, w], "dtype": "float16"}
        tmp_index = folder / f"index.json.{os.getpid()}.partial"
        tmp_index.write_text(json.dumps(index))
        os.replace(tmp_index, folder / "index.json")
    finally:
        store.close()
    cache = open_cache(store_path, autoencoder, key)
    assert cache is not None
    return cache


BALL_STATE = ("position", "radius", "present", "visible")  # the probe world's per-ball state (`ball_weight`)


def read_balls(store: EpisodeStore) -> dict[str, np.ndarray]:
    """The per-ball ground truth `ball_weight` reads, every row; ValueError naming the store if it has none."""
    missing = [key for key in BALL_STATE if key not in store.layout.state_spec]
    if missing:
        raise ValueError(f"objective.ball_weight > 0 reads each ball's {', '.join(BALL_STATE)} from the store's state, "
                         f"and {store.path} records no {', '.join(missing)} (a probe-world store does)")
    return {key: store.read(f"state/{key}", 0, store.num_frames) for key in BALL_STATE}


def reappearing(seen: np.ndarray, starts: np.ndarray, frames: int, hidden: int = 0) -> np.ndarray:
    """Bool per window [s, s + frames) of `starts`: some slot of `seen` (N, S) bool goes from unseen to seen between
    two of its frames; `hidden` m >= 1: after being seen and then unseen for m or more frames, all in the window."""
    view = np.lib.stride_tricks.sliding_window_view(seen, frames, axis=0)[starts]  # (W, S, frames)
    rise = ~view[..., :-1] & view[..., 1:]  # (W, S, frames - 1): unseen at t, seen at t + 1
    if hidden:
        run = np.zeros(view.shape[:2], dtype=np.int64)  # unseen frames in a row up to t
        for t in range(frames - 1):
            run = (run + 1) * ~view[..., t]
            rise[..., t] &= (run >= hidden) & (run <= t)  # long enough, and seen before it (in the window)
    return rise.any(axis=(1, 2))


class LatentWindowDataset(torch.utils.data.Dataset):
    """Windows of `frames` consecutive cached latent frames inside one episode, with their conditioning.

    Item ``i``: "latents" float32 (T', C, h, w); "action" (T', k, D) packed and "action_mask" bool
    (T', k) (`worldsim.models.latents.latent_actions`; latent frame 0 of an episode has one action
    slot, masked); "reward" float32 (T',) summed per latent frame; "terminated" float32 (T',);
    "start" the first latent frame (global index); with `state_change` (a store state key, e.g. player_pos) also
    "state_change" float32 (T',): 1 where that state differs between a latent frame's last row and the previous
    latent frame's, NaN at an episode's first latent frame. `episodes` restricts windows to those episodes
    (held-out episodes are left out of training this way). The per-row arrays are small and read
    once; an item is then two slices, so no DataLoader workers are needed.

    `ball_weight` > 0 (a probe-world store: `read_balls`): also "ball_pixels" float32 (T', 1, h, w), the latent
    pixel weights of `objective.ball_weight` (`ball_pixels`).

    `camera` (a store state key holding where the view is, (x, y) or (x,) in patches, e.g. Crafter's player_pos): also
    "camera" float32 (T', 2), the view's (row, column) at each latent frame's last row, from 0 at the window's first.

    `reappear` (a store state key, e.g. the probe world's per-ball ``visible``) with `repeat` R > 1: every window
    in which some slot of that state rises from <= 0 to > 0 between two of its latent frames (read at each latent
    frame's last row: something hidden comes back into view) is listed R times (`reappear_windows` counts them),
    so a sampler over the dataset draws it R times as often. `hidden` m >= 1: only windows that show the whole hiding,
    the slot > 0 at some latent frame, then <= 0 for m or more frames, then > 0 again, so the window holds what went
    in and for how long, not only that something comes out.
    """

    def __init__(self, cache: LatentCache, store_path: str | os.PathLike, frames: int,
                 episodes: list[int] | None = None, state_change: str | None = None,
                 reappear: str | None = None, repeat: int = 1, hidden: int = 0, ball_weight: float = 0.0,
                 camera: str | None = None) -> None:
        self.cache, self.frames, self.k = cache, int(frames), cache.k
        store = EpisodeStore.open(store_path, "r")
        try:
            for option, key in (("objective.state_change_key", state_change), ("reappear_state", reappear),
                                ("camera_state", camera)):
                if key and key not in store.layout.state_spec:
                    raise ValueError(f"{option}={key!r}: {store_path} records no such state "
                                     f"(its states: {', '.join(store.layout.state_spec) or 'none'})")
            balls = read_balls(store) if ball_weight > 0 else None
            store_frame = store.frame_size
            rows = store.read_rows(["action", "has_action", "reward", "terminated"], 0, store.num_frames)
            states = store.read(f"state/{state_change}", 0, store.num_frames) if state_change else None
            shown = store.read(f"state/{reappear}", 0, store.num_frames) if reappear and repeat > 1 else None
            where = store.read(f"state/{camera}", 0, store.num_frames) if camera else None
        finally:
            store.close()
        acts, masks, rewards, terms, changes, seen, ball_rows, cameras = [], [], [], [], [], [], [], []
        begins = np.concatenate([[0], cache.episode_ends[:-1]]).astype(np.int64)
        for e in range(cache.episodes):
            length = int(cache.episode_ends[e] - begins[e])
            r0 = int(cache.row_starts[e])
            r1 = r0 + num_real_frames(length, self.k)  # rows covered by the cached latent frames
            one = {key: torch.from_numpy(np.ascontiguousarray(v[r0:r1]))[None] for key, v in rows.items()}
            a, m = latent_actions(one["action"], one["has_action"], self.k)
            acts.append(a[0])
            masks.append(m[0])
            rewards.append(latent_rewards(one["reward"], self.k)[0])
            terms.append(latent_terminated(one["terminated"], self.k)[0])
            if states is not None:  # latent frame i ends at row r0 + i k
                last = states[r0:r1:self.k]
                last = last.reshape(len(last), -1)
                moved = (last[1:] != last[:-1]).any(axis=1).astype(np.float32)
                changes.append(torch.from_numpy(np.concatenate([[np.nan], moved]).astype(np.float32)))
            if shown is not None:  # each slot shown at each latent frame's last row
                last = shown[r0:r1:self.k]
                seen.append(last.reshape(len(last), -1) > 0)
            if where is not None:  # the view's (x, y) or (x,) at each latent frame's last row, as (row, column)
                xy = where[r0:r1:self.k].reshape(-1, where[0].size).astype(np.float32)
                if xy.shape[1] > 2:
                    raise ValueError(f"camera_state={camera!r} holds {xy.shape[1]} values a row; the view's (x, y) or (x,)")
                rc = np.stack([xy[:, 1] if xy.shape[1] == 2 else np.zeros(len(xy), np.float32), xy[:, 0]], axis=1)
                cameras.append(torch.from_numpy(rc))
            if balls is not None:
                ball_rows.append({key: v[r0:r1:self.k] for key, v in balls.items()})
        self.action = torch.cat(acts)  # (N', k, D)
        self.action_mask = torch.cat(masks)  # (N', k)
        self.reward = torch.cat(rewards)  # (N',)
        self.terminated = torch.cat(terms)  # (N',)
        self.state_change = torch.cat(changes) if states is not None else None  # (N',)
        self.camera = torch.cat(cameras) if where is not None else None  # (N', 2)
        self.ball_weight, self.balls = float(ball_weight), None
        if balls is not None:  # each ball at each latent frame's last row; the median radius over the store's balls
            self.balls = {key: np.concatenate([r[key] for r in ball_rows]) for key in balls}
            self.balls["reference"] = float(np.median(self.balls["radius"][self.balls["present"]]))
            self.balls["frame_size"], self.balls["latent_hw"] = store_frame, tuple(cache.latents.shape[-2:])
        chosen = range(cache.episodes) if episodes is None else episodes
        starts = [np.arange(begins[e], cache.episode_ends[e] - self.frames + 1) for e in chosen]
        self.starts = np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)
        if len(self.starts) == 0:
            raise ValueError(f"no window of {self.frames} latent frames fits in the chosen episodes of {store_path}")
        self.reappear_windows = 0
        if shown is not None:
            hit = self.starts[reappearing(np.concatenate(seen), self.starts, self.frames, hidden)]
            self.reappear_windows = len(hit)
            self.starts = np.concatenate([self.starts] + [hit] * (repeat - 1))
        self._begins = begins

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = int(self.starts[i])
        e = s + self.frames
        return {"latents": torch.from_numpy(self.cache.latents[s:e].astype(np.float32)),
                "action": self.action[s:e], "action_mask": self.action_mask[s:e], "reward": self.reward[s:e],
                "terminated": self.terminated[s:e], "start": s,
                **({} if self.state_change is None else {"state_change": self.state_change[s:e]}),
                **({} if self.camera is None else {"camera": self.camera[s:e] - self.camera[s]}),
                **({} if self.balls is None else {"ball_pixels": self.ball_pixels(s, e)})}

    def ball_pixels(self, s: int, e: int) -> torch.Tensor:
        """(e - s, 1, h, w) latent pixel weights of latent frames s..e-1: 1, plus `ball_weight` x (median radius /
        radius)^2 inside each visible ball's disc (widened by half a latent pixel)."""
        b = self.balls
        (height, width), (h, w) = b["frame_size"], b["latent_hw"]
        centre = world_to_pixel(b["position"][s:e], (height, width), *BOX) * np.array([h / height, w / width])  # (T, N, 2)
        radius = b["radius"][s:e] * np.array(h / BOX[1])  # (T, N) latent pixels
        on = b["present"][s:e] & (b["visible"][s:e] > 0)  # (T, N)
        rows, cols = np.mgrid[:h, :w] + 0.5
        d2 = (rows[None, None] - centre[..., 0, None, None]) ** 2 + (cols[None, None] - centre[..., 1, None, None]) ** 2
        inside = on[..., None, None] & (d2 <= (radius[..., None, None] + 0.5) ** 2)  # (T, N, h, w)
        extra = self.ball_weight * (b["reference"] / np.maximum(b["radius"][s:e], 1e-6)) ** 2  # (T, N)
        weight = 1.0 + (inside * extra[..., None, None]).sum(axis=1)  # (T, h, w)
        return torch.from_numpy(weight[:, None].astype(np.float32))

    def rows(self, i: int) -> tuple[int, int]:
        """Store rows [first, stop) of the real frames that decoding window i yields (1 + (T'-1)k rows)."""
        s = int(self.starts[i])
        e = int(np.searchsorted(self.cache.episode_ends, s, side="right"))
        first = int(self.cache.row_starts[e]) + (s - int(self._begins[e])) * self.k
        return first, first + num_real_frames(self.frames, self.k)
