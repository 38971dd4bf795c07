"""EpisodeStore: round trips, the row convention, and every bad input named clearly."""

from __future__ import annotations

import json
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces

from worldsim.data.store import FORMAT_VERSION, EpisodeStore, StoreError, concurrent_rows, zarr_internals_missing
from worldsim.spaces import ActionError, pack_action, unpack_action

H, W = 12, 16
STATE = {"pos": ((2,), np.float32), "alive": ((), np.bool_)}


def make_store(path: Path, action_space=spaces.Discrete(5), state_spec=STATE, **kw) -> EpisodeStore:
    return EpisodeStore.create(path, env_id="test/Env-v0", frame_size=(H, W), fps=15, action_space=action_space,
                               state_spec=state_spec, env_kwargs={"size": 64}, source={"kind": "test"},
                               chunk_frames=4, **kw)


def episode(steps: int, seed: int, d: int = 1, n: int = 5) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.integers(0, 256, (steps + 1, H, W, 3), dtype=np.uint8),
        "action": rng.integers(0, n, (steps, d)),
        "reward": rng.normal(size=steps).astype(np.float32),
        "terminated": np.arange(steps) == steps - 1,
        "truncated": np.zeros(steps, bool),
        "state": {"pos": rng.normal(size=(steps + 1, 2)).astype(np.float32), "alive": np.ones(steps + 1, bool)},
    }


def assert_rows(got: dict, ep: dict) -> None:
    """The stored rows of `ep` follow the row convention: row 0 has no action, reward 0, no flags."""
    steps = len(ep["obs"]) - 1
    np.testing.assert_array_equal(got["obs"], ep["obs"])
    np.testing.assert_array_equal(got["action"], np.concatenate([np.zeros((1, ep["action"].shape[1]), int), ep["action"]]))
    np.testing.assert_array_equal(got["has_action"], np.arange(steps + 1) > 0)
    np.testing.assert_array_equal(got["reward"], np.concatenate([[0], ep["reward"]]).astype(np.float32))
    np.testing.assert_array_equal(got["terminated"], np.concatenate([[False], ep["terminated"]]))
    np.testing.assert_array_equal(got["truncated"], np.concatenate([[False], ep["truncated"]]))
    for key, value in ep["state"].items():
        np.testing.assert_array_equal(got[f"state/{key}"], value)


def test_round_trip_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    eps = [episode(steps, seed) for seed, steps in enumerate([9, 0, 3, 17])]
    with make_store(path) as store:
        assert [store.append_episode(**ep) for ep in eps] == [0, 1, 2, 3]
        for i, ep in enumerate(eps):
            assert_rows(store.episode(i), ep)
    store = EpisodeStore.open(path)
    assert store.num_episodes == 4 and store.num_frames == 10 + 1 + 4 + 18
    np.testing.assert_array_equal(store.episode_ends, [10, 11, 15, 33])
    assert store.episode_slice(2) == slice(11, 15) and store.episode_slice(-1) == slice(15, 33)
    for i, ep in enumerate(eps):
        assert_rows(store.episode(i), ep)
    # A read across an episode boundary and across obs chunks is the concatenation.
    np.testing.assert_array_equal(store.read("obs", 8, 13), np.concatenate([eps[0]["obs"][8:], eps[1]["obs"], eps[2]["obs"][:2]]))
    assert store.keys() == ["obs", "action", "has_action", "reward", "terminated", "truncated", "state/pos", "state/alive"]
    assert store.read("action", 0, 2).dtype == np.int64 and store.read("state/alive", 0, 2).dtype == bool
    assert store.env_id == "test/Env-v0" and store.frame_size == (H, W) and store.fps == 15.0
    assert store.action_space == spaces.Discrete(5)
    attrs = store.attrs
    assert attrs["worldsim_format"] == FORMAT_VERSION and attrs["env_kwargs"] == {"size": 64}
    assert attrs["source"] == {"kind": "test"} and attrs["frame_size"] == [H, W] and attrs["created"]
    assert store.nbytes == 33 * (H * W * 3 + 8 + 1 + 4 + 1 + 1 + 8 + 1) + 4 * 8
    assert 0 < store.nbytes_stored
    assert store.uncommitted_rows == 0


def test_raw_actions_of_a_dict_space_are_packed_and_none_means_no_action(tmp_path: Path) -> None:
    space = spaces.Dict(OrderedDict(move=spaces.MultiDiscrete([3, 4], start=[-1, 0]),
                                    force=spaces.Box(-1, 1, (2,), np.float32)))
    store = make_store(tmp_path / "s.zarr", action_space=space, state_spec=None)
    actions = [space.sample() for _ in range(4)]
    actions[2] = None
    store.append_episode(np.zeros((5, H, W, 3), np.uint8), action=actions)
    got = store.episode(0)
    assert got["action"].dtype == np.float32 and got["action"].shape == (5, 4)
    np.testing.assert_array_equal(got["has_action"], [False, True, True, False, True])
    np.testing.assert_array_equal(got["action"][3], 0)
    for t in (1, 2, 4):
        back = unpack_action(space, got["action"][t])
        np.testing.assert_array_equal(back["move"], actions[t - 1]["move"])
        np.testing.assert_array_equal(back["force"], actions[t - 1]["force"])
        np.testing.assert_array_equal(got["action"][t], pack_action(space, actions[t - 1]))


def test_action_free_store(tmp_path: Path) -> None:
    path = tmp_path / "video.zarr"
    store = make_store(path, action_space=None, state_spec=None)
    obs = np.random.default_rng(0).integers(0, 256, (7, H, W, 3), dtype=np.uint8)
    store.append_episode(obs, truncated=np.arange(6) == 5)
    with pytest.raises(StoreError, match="action-free"):
        store.append_episode(obs, action=np.zeros((6, 1), np.int64))
    store.close()
    store = EpisodeStore.open(path)
    assert store.action_space is None and "action" not in store.keys()
    ep = store.episode(0)
    assert not ep["has_action"].any() and ep["truncated"][-1] and not ep["truncated"][:-1].any()
    np.testing.assert_array_equal(ep["obs"], obs)
    assert store.read("action", 0, 7).shape == (7, 0)


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        EpisodeStore.open(tmp_path / "missing.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a worldsim episode store"):
        EpisodeStore.open(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    with pytest.raises(StoreError, match="no worldsim_format"):
        EpisodeStore.open(tmp_path / "other")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match="not a readable Zarr v3 group"):
        EpisodeStore.open(tmp_path / "junk")
    make_store(tmp_path / "s.zarr").close()
    with pytest.raises(StoreError, match="already exists"):
        make_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="mode"):
        EpisodeStore.open(tmp_path / "s.zarr", "w")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "junk", "other", "s.zarr"]  # no temporaries left


def test_newer_format_and_corrupt_store(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with make_store(path) as store:
        store.append_episode(**episode(3, 0))
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["worldsim_format"] = FORMAT_VERSION + 1
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="newer than this code"):
        EpisodeStore.open(path)
    meta["attributes"]["worldsim_format"] = FORMAT_VERSION
    (path / "zarr.json").write_text(json.dumps(meta))
    shutil.rmtree(path / "data" / "reward")
    with pytest.raises(StoreError, match="corrupt"):
        EpisodeStore.open(path)


def test_bad_create_arguments(tmp_path: Path) -> None:
    kw = dict(env_id="t", frame_size=(H, W), fps=10, action_space=spaces.Discrete(2))
    with pytest.raises(StoreError, match="frame_size"):
        EpisodeStore.create(tmp_path / "a", **{**kw, "frame_size": (0, 4)})
    with pytest.raises(StoreError, match="fps"):
        EpisodeStore.create(tmp_path / "a", **{**kw, "fps": 0})
    with pytest.raises(StoreError, match="action space"):
        EpisodeStore.create(tmp_path / "a", **{**kw, "action_space": spaces.Text(5)})
    with pytest.raises(StoreError, match="state key"):
        EpisodeStore.create(tmp_path / "a", **kw, state_spec={"a/b": ((1,), np.float32)})
    with pytest.raises(StoreError, match="dtype"):
        EpisodeStore.create(tmp_path / "a", **kw, state_spec={"name": ((1,), np.str_)})
    with pytest.raises(StoreError, match="JSON"):
        EpisodeStore.create(tmp_path / "a", **kw, env_kwargs={"f": object()})
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda e: e.update(obs=e["obs"][:, :, :-1]), StoreError, r"obs has shape \(5, 12, 15, 3\).*expected \(T \+ 1, 12, 16, 3\)"),
        (lambda e: e.update(obs=e["obs"].astype(np.float32)), StoreError, "float32.*uint8"),
        (lambda e: e.update(obs=e["obs"][:0]), StoreError, "empty episode"),
        (lambda e: e.update(reward=e["reward"][:-1]), StoreError, r"reward has shape \(3,\); expected \(4,\)"),
        (lambda e: e.update(action=e["action"][:-1]), StoreError, r"shape \(3, 1\); expected \(T, D\) = \(4, 1\)"),
        (lambda e: e.update(action=[0, 1, 2]), StoreError, "got 3 actions for an episode of 4 steps"),
        (lambda e: e.update(action=np.array([[0], [1], [9], [2]])), ActionError, r"action 2 \(\[9\]\) is outside"),
        (lambda e: e.update(action=np.full((4, 1), 0.5)), ActionError, "dtype float64"),
        (lambda e: e.update(action=[0, 1, 7, 2]), ActionError, "step 2"),
        (lambda e: e.update(terminated=np.array([True, False, False, False])), StoreError, "terminated is True at step 0"),
        (lambda e: e.update(truncated=np.array([0.5, 0, 0, 0])), StoreError, "truncated must be booleans"),
        (lambda e: e.update(reward=np.array([0, np.nan, 0, 0])), StoreError, "NaN"),
        (lambda e: e.update(state=None), StoreError, r"state keys \[\] do not match.*\['alive', 'pos'\]"),
        (lambda e: e["state"].update(extra=np.zeros(5)), StoreError, "do not match"),
        (lambda e: e["state"].update(pos=np.zeros((5, 3), np.float32)), StoreError, r"state 'pos' has shape \(5, 3\); expected \(5, 2\)"),
        (lambda e: e["state"].update(pos=np.zeros((5, 2), complex)), StoreError, "state 'pos' has dtype complex128"),
    ],
)
def test_bad_episodes_are_refused_and_nothing_is_written(tmp_path: Path, change, error, match) -> None:
    path = tmp_path / "s.zarr"
    store = make_store(path)
    store.append_episode(**episode(2, 0))
    bad = episode(4, 1)
    change(bad)
    with pytest.raises(error, match=match):
        store.append_episode(**bad)
    store.close()
    store = EpisodeStore.open(path)
    assert store.num_episodes == 1 and store.uncommitted_rows == 0
    assert_rows(store.episode(0), episode(2, 0))


def test_read_only_and_ranges(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with make_store(path) as store:
        store.append_episode(**episode(3, 0))
    store = EpisodeStore.open(path, "r")
    with pytest.raises(StoreError, match="read-only"):
        store.append_episode(**episode(3, 0))
    with pytest.raises(IndexError, match="4 committed rows"):
        store.read("obs", 2, 5)
    with pytest.raises(KeyError, match="no array 'nope'"):
        store.read("nope", 0, 1)
    with pytest.raises(IndexError, match="1 episodes"):
        store.episode_slice(1)


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with make_store(path):
        with pytest.raises(StoreError, match="already open for appending"):
            EpisodeStore.open(path, "a")
        EpisodeStore.open(path, "r")  # readers are welcome
    EpisodeStore.open(path, "a").close()


def test_data_past_the_commit_point_is_ignored_then_trimmed(tmp_path: Path) -> None:
    """What a writer killed after writing an episode's data but before its commit leaves behind."""
    path = tmp_path / "s.zarr"
    eps = [episode(5, 0), episode(3, 1)]
    with make_store(path) as store:
        for ep in eps:
            store.append_episode(**ep)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["committed_episodes"] = 1  # episode 1 written but never committed
    (path / "zarr.json").write_text(json.dumps(meta))
    (path / "data" / "obs" / "c.0.0.0.0.0123abcd.partial").write_bytes(b"torn")  # a killed zarr write

    store = EpisodeStore.open(path, "r")
    assert store.num_episodes == 1 and store.num_frames == 6 and store.uncommitted_rows == 4
    with pytest.raises(IndexError):
        store.read("obs", 0, 7)
    assert_rows(store.episode(0), eps[0])

    replacement = episode(7, 2)
    with EpisodeStore.open(path, "a") as store:
        assert store.uncommitted_rows == 0 and not list(path.rglob("*.partial"))
        assert store.append_episode(**replacement) == 1
    store = EpisodeStore.open(path)
    np.testing.assert_array_equal(store.episode_ends, [6, 14])
    assert_rows(store.episode(0), eps[0])
    assert_rows(store.episode(1), replacement)


def test_capacity_grows_ahead_while_writing_and_close_trims_it(tmp_path: Path) -> None:
    """Arrays are allocated geometrically (few metadata rewrites); spare rows never show and close() drops them."""
    import zarr

    path = tmp_path / "s.zarr"
    eps = [episode(5, seed) for seed in range(6)]
    with make_store(path) as store:
        for ep in eps:
            store.append_episode(**ep)
        assert store.uncommitted_rows > 0  # spare capacity while open
        reader = EpisodeStore.open(path)  # a concurrent reader sees exactly the committed rows
        assert reader.num_frames == 36 and reader.episode(5)["obs"].shape[0] == 6
        assert_rows(reader.episode(5), eps[5])
    group = zarr.open_group(path, mode="r")
    assert {group[f"data/{k}"].shape[0] for k in ("obs", "reward", "state/pos")} == {36}
    assert group["meta/episode_ends"].shape == (6,)
    assert EpisodeStore.open(path).uncommitted_rows == 0


def test_installed_zarr_still_has_the_internals_of_the_fast_path(tmp_path: Path) -> None:
    """Without them the store still works, through the public API, but slower: an upgrade must say so here."""
    import zarr

    path = tmp_path / "s.zarr"
    with make_store(path) as store:
        store.append_episode(**episode(3, 0))
    group = zarr.open_group(path, mode="r")
    missing = sorted({m for k in ("obs", "action", "reward") for m in zarr_internals_missing(group[f"data/{k}"])})
    assert not missing, (f"zarr {zarr.__version__} no longer has {', '.join(missing)}: EpisodeStore now reads and "
                         "writes through the slower public API; port concurrent_rows in worldsim/data/store.py")


def test_public_api_fallback_reads_and_writes_like_the_fast_path(tmp_path: Path) -> None:
    import zarr

    path = tmp_path / "s.zarr"
    with make_store(path) as store:
        for seed, steps in enumerate([5, 9]):
            store.append_episode(**episode(steps, seed))
        keys = store.keys()
    reader = EpisodeStore.open(path)
    group = zarr.open_group(path, mode="r")
    arrays = [group[f"data/{k}"] for k in keys]
    for rows in (slice(0, 16), slice(3, 11), slice(7, 7)):
        fast, slow = concurrent_rows(arrays, rows), concurrent_rows(arrays, rows, fast=False)
        expected = reader.read_rows(keys, rows.start, rows.stop)
        for key, a, b in zip(keys, fast, slow):
            assert np.asarray(a).dtype == b.dtype == expected[key].dtype
            np.testing.assert_array_equal(np.asarray(a), b)
            np.testing.assert_array_equal(b, expected[key])

    values = [np.arange(24, dtype=np.float32).reshape(8, 3), np.arange(8) % 3 == 0]
    written = []
    for fast in (True, False):
        targets = [zarr.create_array(tmp_path / f"{fast}_{i}.zarr", shape=(12, *v.shape[1:]), chunks=(4, *v.shape[1:]),
                                     dtype=v.dtype, fill_value=0) for i, v in enumerate(values)]
        concurrent_rows(targets, slice(2, 10), values, fast=fast)
        written.append([t[:] for t in targets])
    for a, b, v in zip(*written, values):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a[2:10], v)


def test_a_lost_index_chunk_is_refused_and_no_committed_frame_is_trimmed(tmp_path: Path) -> None:
    """A deleted meta/episode_ends chunk reads back as zeros: opening must refuse, never trim the data to it."""
    path = tmp_path / "s.zarr"
    with make_store(path) as store:
        for i in range(3):
            store.append_episode(**episode(4, i))
        frames = store.num_frames
    chunks = [p for p in (path / "meta" / "episode_ends").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert chunks
    for chunk in chunks:
        chunk.unlink()
    for mode in ("r", "a"):
        with pytest.raises(StoreError, match="does not rise strictly"):
            EpisodeStore.open(path, mode)
    rows = json.loads((path / "data" / "obs" / "zarr.json").read_text())["shape"][0]
    assert rows >= frames  # every committed row is still there


def test_arrays_name_their_dimensions_for_xarray(tmp_path: Path) -> None:
    import zarr

    path = tmp_path / "s.zarr"
    with make_store(path) as store:
        store.append_episode(**episode(3, 0))
    group = zarr.open_group(path, mode="r")
    assert group["data/obs"].metadata.dimension_names == ("row", "y", "x", "channel")
    assert group["meta/episode_ends"].metadata.dimension_names == ("episode",)
    for name, arr in group["data"].arrays():
        names = arr.metadata.dimension_names
        assert names is not None and names[0] == "row" and len(names) == arr.ndim, name


def test_two_creators_of_one_store_one_wins_the_other_gets_one_line(tmp_path, monkeypatch):
    import os

    from worldsim.data.store import StoreError

    path = tmp_path / "race.zarr"
    real_rename = os.rename
    raced = []

    def other_process_first(src, dst):  # the other creator's rename lands just before ours
        if str(dst) == str(path) and not raced:
            raced.append(True)
            make_store(path).close()
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", other_process_first)
    with pytest.raises(StoreError, match="created by another process at the same time"):
        make_store(path)
    monkeypatch.undo()
    assert EpisodeStore.open(path).num_episodes == 0  # the winner's store is intact
    assert [p.name for p in tmp_path.iterdir()] == ["race.zarr"]  # no temporary left behind
