import numpy as np
from gymnasium import spaces

from worldsim.cli import main
from worldsim.data.info import describe, format_info
from worldsim.data.store import EpisodeStore


def test_describe_counts_sizes_and_compression(tmp_path, capsys):
    path = tmp_path / "s.zarr"
    with EpisodeStore.create(path, env_id="test", frame_size=(64, 64), fps=10, action_space=spaces.Discrete(3)) as store:
        store.append_episode(np.zeros((5, 64, 64, 3), np.uint8), action=[0, 1, 2, 1])  # flat frames compress well
        store.append_episode(np.full((3, 64, 64, 3), 7, np.uint8), action=[2, 2])
    with EpisodeStore.open(path) as store:
        d = describe(store)
    assert (d["episodes"], d["frames"], d["frames_with_action"]) == (2, 8, 6)
    assert d["episode_length"] == {"min": 3, "mean": 4.0, "max": 5}
    assert d["bytes_uncompressed"] >= 8 * 64 * 64 * 3
    assert 0 < d["bytes_on_disk"] and d["compression_ratio"] > 2
    assert "Discrete(3)" in format_info(d)
    assert main(["info", str(path), "--json"]) == 0
    assert '"episodes": 2' in capsys.readouterr().out


def _store_of_three(path):
    rng = np.random.default_rng(0)
    with EpisodeStore.create(path, env_id="test", frame_size=(8, 8), fps=10, action_space=spaces.Discrete(3),
                             chunk_frames=4) as store:
        for n in (6, 6, 6):  # rows 0-5, 6-11, 12-17: obs chunks of 4 rows
            store.append_episode(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), action=list(rng.integers(0, 3, n - 1)))


def test_verify_names_the_episodes_of_a_missing_or_garbled_chunk_and_reads_name_them_too(tmp_path, capsys):
    import pytest

    from worldsim.data.store import StoreError

    path = tmp_path / "s.zarr"
    _store_of_three(path)
    with pytest.raises(SystemExit) as none:
        raise SystemExit(main(["info", str(path), "--verify"]))
    assert none.value.code == 0 and "every chunk" in capsys.readouterr().out
    chunk = path / "data" / "obs" / "c.2.0.0.0"  # rows 8-11: episode 1 (6-11)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    (path / "data" / "obs" / "c.4.0.0.0").unlink()  # rows 16-17: episode 2, would read as black frames
    with EpisodeStore.open(path) as store:
        problems = store.verify()
        assert [(p["array"], p["episodes"]) for p in problems] == [("obs", [1]), ("obs", [2])]
        assert "missing" in problems[1]["error"] and "checksum" in problems[0]["error"].lower()
        with pytest.raises(StoreError, match=r"obs rows \[6, 12\) \(episode 1\).*info --verify"):
            store.episode(1)
        assert store.episode(0)["obs"].shape == (6, 8, 8, 3)  # intact episodes still read
    with pytest.raises(SystemExit) as bad:
        main(["info", str(path), "--verify"])
    out = capsys.readouterr().out
    assert bad.value.code == 1 and "2 damaged chunks in 2 episodes: [1, 2]" in out
