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
