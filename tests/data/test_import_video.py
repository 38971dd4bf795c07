"""Importing real mp4 files (encoded here with PyAV) with and without VPT actions."""

import json

import av
import numpy as np
import pytest

from worldsim.cli import compose, main
from worldsim.data.import_video import VPT_ACTION_SPACE, VPT_BUTTONS, import_videos
from worldsim.data.store import EpisodeStore, StoreError


def _frames(n, h=48, w=64):
    """A white square moving right on black: easy to check after lossy encoding."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, 16:32, 2 * i : 2 * i + 16] = 255
    return frames


def _write_mp4(path, frames, fps=20):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt, s.options = "yuv420p", {"crf": "10"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _vpt_line(keys=(), dx=0.0, dy=0.0, buttons=()):
    return {"mouse": {"dx": dx, "dy": dy, "buttons": list(buttons)}, "keyboard": {"keys": list(keys)}, "isGuiOpen": False}


def _cfg(src, out, *extra):
    return compose("import_video", [f"src={src}", f"out={out}", "size=32", "progress=false", *extra])


def test_action_free_import(tmp_path):
    (tmp_path / "v").mkdir()
    _write_mp4(tmp_path / "v" / "a.mp4", _frames(12))
    _write_mp4(tmp_path / "v" / "b.mp4", _frames(8))
    result = import_videos(_cfg(tmp_path / "v", tmp_path / "s.zarr", "square=false"))
    store = EpisodeStore.open(tmp_path / "s.zarr")
    assert (result.episodes, store.num_episodes, store.num_frames) == (2, 2, 20)
    assert store.action_space is None and store.fps == 20
    ep = store.episode(0)
    assert ep["obs"].shape == (12, 32, 32, 3) and not ep["has_action"].any()
    assert ep["truncated"][-1] and not ep["terminated"].any()
    # the square (rows 8..16 after resizing 48 -> 32) moves right by 1 pixel per frame at this scale
    column = ep["obs"][:, 12, :, 0].astype(float)
    centres = (column * np.arange(32)).sum(1) / column.sum(1)
    np.testing.assert_allclose(np.diff(centres), 1.0, atol=0.25)


def test_vpt_actions_are_aligned_and_merged_when_resampling(tmp_path):
    (tmp_path / "v").mkdir()
    _write_mp4(tmp_path / "v" / "clip.mp4", _frames(10))
    lines = [_vpt_line() for _ in range(10)]
    lines[0] = _vpt_line(keys=["key.keyboard.w"], dx=240.0)  # leads to frame 1
    lines[3] = _vpt_line(keys=["key.keyboard.space"], buttons=[0], dy=-120.0)  # leads to frame 4
    lines[4] = _vpt_line(dy=-120.0)  # leads to frame 5
    (tmp_path / "v" / "clip.jsonl").write_text("\n".join(json.dumps(x) for x in lines))

    import_videos(_cfg(tmp_path / "v", tmp_path / "full.zarr"))
    store = EpisodeStore.open(tmp_path / "full.zarr")
    assert store.action_space == VPT_ACTION_SPACE
    ep = store.episode(0)
    assert not ep["has_action"][0] and ep["has_action"][1:].all()
    buttons, camera = ep["action"][:, : len(VPT_BUTTONS)], ep["action"][:, len(VPT_BUTTONS) :]
    assert buttons[1, VPT_BUTTONS.index("forward")] == 1 and buttons[1].sum() == 1
    np.testing.assert_allclose(camera[1], [0.0, 36.0])  # 240 px * 360 / 2400 degrees of yaw
    assert buttons[4, VPT_BUTTONS.index("jump")] == 1 and buttons[4, VPT_BUTTONS.index("attack")] == 1

    import_videos(_cfg(tmp_path / "v", tmp_path / "half.zarr", "fps=10"))  # keeps frames 0, 2, 4, 6, 8
    half = EpisodeStore.open(tmp_path / "half.zarr").episode(0)
    assert len(half["obs"]) == 5
    hb, hc = half["action"][:, : len(VPT_BUTTONS)], half["action"][:, len(VPT_BUTTONS) :]
    assert hb[1, VPT_BUTTONS.index("forward")] == 1  # lines 0, 1 lead to frame 2
    assert hb[2, VPT_BUTTONS.index("jump")] == 1  # lines 2, 3 lead to frame 4
    np.testing.assert_allclose(hc[3], [-18.0, 0.0])  # line 4 (-120 px) and 5 lead to frame 6


def test_max_frames_splits_and_the_command_appends(tmp_path, capsys):
    (tmp_path / "v").mkdir()
    _write_mp4(tmp_path / "v" / "a.mp4", _frames(10))
    out = tmp_path / "s.zarr"
    assert main(["import-video", str(tmp_path / "v"), f"out={out}", "size=32", "max_frames=4", "progress=false"]) == 0
    assert "3 episodes" in capsys.readouterr().out
    assert EpisodeStore.open(out).episode_ends.tolist() == [4, 8, 10]
    assert main(["import-video", str(tmp_path / "v"), f"out={out}", "size=32", "progress=false"]) == 0
    assert EpisodeStore.open(out).num_episodes == 4


def test_a_refused_append_releases_the_store_for_the_next_import(tmp_path):
    (tmp_path / "v").mkdir()
    _write_mp4(tmp_path / "v" / "a.mp4", _frames(6))
    (tmp_path / "vpt").mkdir()
    _write_mp4(tmp_path / "vpt" / "b.mp4", _frames(6))
    (tmp_path / "vpt" / "b.jsonl").write_text("\n".join(json.dumps(_vpt_line()) for _ in range(6)) + "\n")
    out = tmp_path / "s.zarr"
    import_videos(_cfg(tmp_path / "v", out))  # action-free, 32x32
    with pytest.raises(StoreError, match=r"its frames are \(32, 32\), not \(16, 16\)"):
        import_videos(_cfg(tmp_path / "v", out, "size=16"))
    with pytest.raises(StoreError, match="cannot append VPT actions"):
        import_videos(_cfg(tmp_path / "vpt", out))
    # the refusals released the writer lock: the same process appends to the store next
    assert import_videos(_cfg(tmp_path / "v", out)).episodes == 1
    with EpisodeStore.open(out, mode="a"):
        pass
    assert EpisodeStore.open(out).num_episodes == 2


def test_bad_inputs(tmp_path):
    with pytest.raises(StoreError, match="not a folder"):
        import_videos(_cfg(tmp_path / "nowhere", tmp_path / "s.zarr"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="no .mp4"):
        import_videos(_cfg(tmp_path / "empty", tmp_path / "s.zarr"))
    (tmp_path / "v").mkdir()
    _write_mp4(tmp_path / "v" / "a.mp4", _frames(4))
    (tmp_path / "v" / "a.jsonl").write_text('{"mouse": {}}\n{not json\n')
    with pytest.raises(StoreError, match="a.jsonl:2"):
        import_videos(_cfg(tmp_path / "v", tmp_path / "s.zarr"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.mp4").write_bytes(b"not a video")
    with pytest.raises(StoreError, match="x.mp4"):
        import_videos(_cfg(tmp_path / "bad", tmp_path / "t.zarr", "fps=10"))


@pytest.mark.parametrize("case, match", [
    ("short_jsonl", r"a.jsonl has 5 action lines for the 20 frames of a.mp4"),
    ("long_jsonl", r"a.jsonl has 30 action lines for the 20 frames"),
    ("not_an_object", r"a.jsonl:3 is not a VPT action object"),
    ("broken_video", r"b.mp4"),
])
def test_a_bad_video_stops_with_its_name_and_writes_nothing_of_it_or_is_skipped(tmp_path, case, match):
    src = tmp_path / "v"
    src.mkdir()
    _write_mp4(src / "a.mp4", _frames(20))
    lines = [_vpt_line(keys=["key.keyboard.w"])] * 20
    if case == "short_jsonl":
        lines = lines[:5]
    elif case == "long_jsonl":
        lines = lines + lines[:10]
    (src / "a.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    if case == "not_an_object":
        (src / "a.jsonl").write_text("\n".join([json.dumps(lines[0])] * 2 + ["[1, 2]"] + [json.dumps(lines[0])] * 17) + "\n")
    _write_mp4(src / "c.mp4", _frames(6))  # a good video after the bad one
    if case == "broken_video":
        (src / "a.jsonl").unlink()
        good = (src / "c.mp4").read_bytes()
        (src / "b.mp4").write_bytes(good[: len(good) // 3])  # truncated mid-stream
        (src / "a.mp4").unlink()
    out = tmp_path / "s.zarr"
    with pytest.raises(StoreError, match=match) as stopped:
        import_videos(_cfg(src, out, *(["actions=none", "fps=20"] if case == "broken_video" else ["actions=auto"])))
    assert "nothing of it was written" in str(stopped.value) and "\n" not in str(stopped.value)
    if out.exists():
        assert EpisodeStore.open(out).num_episodes == 0  # the bad video came first: nothing in the store
    skipped = import_videos(_cfg(src, tmp_path / "skip.zarr", "on_error=skip",
                                 *(["actions=none"] if case == "broken_video" else ["actions=auto"])))
    assert len(skipped.skipped) == 1 and skipped.videos == 1  # c.mp4 imported, the bad one named and left out
    assert EpisodeStore.open(tmp_path / "skip.zarr").num_episodes == 1
