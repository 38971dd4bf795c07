"""Repair of damaged stores: the damaged store is only read, every intact episode is copied row for row."""

import hashlib

import numpy as np
import pytest
from gymnasium import spaces

from worldsim.cli import main
from worldsim.data.integrity import repair
from worldsim.data.store import EpisodeStore, StoreError


def _digest(path):
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + f.read_bytes())
    return h.hexdigest()


def _store(path, action_space=spaces.Discrete(3), lengths=(6, 6, 6)):
    rng = np.random.default_rng(0)
    with EpisodeStore.create(path, env_id="test", frame_size=(8, 8), fps=10, action_space=action_space,
                             chunk_frames=4, state_spec={"pos": ((2,), np.float32)}) as store:
        for n in lengths:  # rows 0-5, 6-11, 12-17: obs chunks of 4 rows
            action = list(rng.integers(0, 3, n - 1)) if action_space is not None else None
            store.append_episode(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), action=action,
                                 reward=rng.normal(size=n - 1), truncated=[False] * (n - 2) + [True],
                                 state={"pos": rng.normal(size=(n, 2)).astype(np.float32)})
    with EpisodeStore.open(path) as store:
        return [store.episode(i) for i in range(store.num_episodes)]


def _episodes(path):
    with EpisodeStore.open(path) as store:
        return [store.episode(i) for i in range(store.num_episodes)]


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_lost_index_is_refused_with_the_repair_command_and_rebuilt_from_the_rows(tmp_path, capsys):
    src, dst = tmp_path / "s.zarr", tmp_path / "fixed.zarr"
    before = _store(src)
    for chunk in (src / "meta" / "episode_ends").glob("c.*"):
        chunk.unlink()
    digest = _digest(src)
    with pytest.raises(StoreError, match=r"worldsim repair .*s\.zarr NEW_STORE"):
        EpisodeStore.open(src, "a")
    assert main(["repair", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 episodes (18 frames)" in out and "has_action" in out
    after = _episodes(dst)
    assert len(after) == 3
    for a, b in zip(before, after):
        _same(a, b)
    assert _digest(src) == digest  # the damaged store was only read
    with EpisodeStore.open(dst) as store:
        assert store.attrs["source"]["repaired_from"] == str(src) and store.verify() == []


def test_damaged_chunks_drop_only_the_episodes_they_touch(tmp_path):
    src = tmp_path / "s.zarr"
    before = _store(src)
    chunk = src / "data" / "obs" / "c.2.0.0.0"  # rows 8-11: episode 1
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    result = repair(src, tmp_path / "fixed.zarr")
    assert result["kept"] == [0, 2] and list(result["dropped"]) == [1] and result["index"] == "meta/episode_ends"
    assert "checksum" in result["dropped"][1].lower()
    after = _episodes(tmp_path / "fixed.zarr")
    _same(before[0], after[0])
    _same(before[2], after[1])


def test_action_free_store_rebuilds_its_index_from_the_end_flags(tmp_path):
    src = tmp_path / "s.zarr"
    before = _store(src, action_space=None, lengths=(3, 5, 4))
    for chunk in (src / "meta" / "episode_ends").glob("c.*"):
        chunk.unlink()
    result = repair(src, tmp_path / "fixed.zarr")
    assert result["kept"] == [0, 1, 2] and "truncated" in result["index"]
    for a, b in zip(before, _episodes(tmp_path / "fixed.zarr")):
        _same(a, b)


def test_repair_never_overwrites(tmp_path, capsys):
    src = tmp_path / "s.zarr"
    _store(src)
    with pytest.raises(StoreError, match="already exists"):
        repair(src, src)
    assert main(["repair", str(src)]) != 0
    assert "repair takes the damaged store and a new path" in capsys.readouterr().err


@pytest.fixture
def tmpfs(tmp_path):
    """A real file system mounted at tmp_path/mnt, made read-only by the test (needs root; skipped without)."""
    import subprocess

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a file system here (mount needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_read_only_file_system_fails_before_collecting_for_new_and_existing_stores(tmpfs, capsys):
    import subprocess

    before = _store(tmpfs / "s.zarr")
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(OSError, match="Read-only"):
        EpisodeStore.open(tmpfs / "s.zarr", "a")
    for out in ("s.zarr", "new.zarr"):  # the probe world would collect for seconds; it fails at once instead
        code = main(["collect", "env=probe", "episodes=50", f"out={tmpfs / out}", "progress=false"])
        err = capsys.readouterr().err
        assert code == 2 and "read-only" in err and len(err.strip().splitlines()) == 1
    for a, b in zip(before, _episodes(tmpfs / "s.zarr")):
        _same(a, b)


def test_appending_onto_a_garbled_tail_chunk_names_store_array_and_episode(tmp_path):
    path = tmp_path / "s.zarr"
    before = _store(path)  # 18 rows; obs chunks of 4 rows: c.4 holds rows 16-17, the end of episode 2
    chunk = path / "data" / "obs" / "c.4.0.0.0"
    data = bytearray(chunk.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
    chunk.write_bytes(bytes(data))
    with EpisodeStore.open(path, "a") as store:
        with pytest.raises(StoreError, match=r"s.zarr: cannot append: data/obs rows \[16, 18\) \(episode 2\), in the chunk "
                                             r"the new episode continues, do not read .*worldsim repair"):
            store.append_episode(np.zeros((3, 8, 8, 3), np.uint8), action=[0, 1],
                                 state={"pos": np.zeros((3, 2), np.float32)})
        assert store.num_episodes == 3
    with EpisodeStore.open(path) as store:
        assert store.num_episodes == 3
        for i in (0, 1):  # the intact episodes read as before
            _same(store.episode(i), before[i])


@pytest.mark.parametrize("command", [["info"], ["info", "--verify"], ["repair", "NEW"],
                                     ["collect", "env=probe", "episodes=1", "progress=false"]])
def test_a_torn_array_metadata_file_is_named_with_the_store(tmp_path, capsys, command):
    path = tmp_path / "s.zarr"
    _store(path)
    meta = path / "data" / "obs" / "zarr.json"
    meta.write_bytes(meta.read_bytes()[: meta.stat().st_size // 2])
    digest = _digest(path)
    name, *rest = command
    args = [name, str(path), *(str(tmp_path / "new.zarr") if a == "NEW" else a for a in rest)]
    if name == "collect":
        args = [name, f"out={path}", *rest]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: the metadata of data/obs ({meta}) does not read (JSONDecodeError" in err, err
    assert f"restore {meta} from a copy" in err and "Traceback" not in err
    assert _digest(path) == digest  # the damaged store is left as it was
