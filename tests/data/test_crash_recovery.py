"""A real writer process killed with SIGKILL at random moments never loses a committed episode."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from worldsim.data.store import EpisodeStore

WRITER = Path(__file__).with_name("crash_writer.py")
SEED = 1234
KILLS = 24

_spec = importlib.util.spec_from_file_location("crash_writer", WRITER)
writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(writer)


def check_episode(store: EpisodeStore, i: int) -> None:
    """Episode i of `store` holds exactly what the writer appended, in the stored row layout."""
    want = writer.expected_episode(SEED, i)
    got = store.episode(i)
    steps = len(want["obs"]) - 1
    assert store.episode_slice(i).stop - store.episode_slice(i).start == steps + 1
    np.testing.assert_array_equal(got["obs"], want["obs"])
    np.testing.assert_array_equal(got["action"][1:], want["action"])
    np.testing.assert_array_equal(got["action"][0], 0)
    np.testing.assert_array_equal(got["has_action"], np.arange(steps + 1) > 0)
    np.testing.assert_array_equal(got["reward"], np.concatenate([[0.0], want["reward"]]).astype(np.float32))
    np.testing.assert_array_equal(got["terminated"], np.concatenate([[False], want["terminated"]]))
    np.testing.assert_array_equal(got["truncated"], np.concatenate([[False], want["truncated"]]))
    np.testing.assert_array_equal(got["state/pos"], want["state"]["pos"])


def check_store(store: EpisodeStore, first: int = 0) -> None:
    lengths = [writer.episode_length(SEED, i) + 1 for i in range(store.num_episodes)]
    np.testing.assert_array_equal(store.episode_ends, np.cumsum(lengths))
    for i in range(first, store.num_episodes):
        check_episode(store, i)


def kill_writer_at_random(path: Path, rng: np.random.Generator, log: Path) -> None:
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), str(SEED)], stdout=subprocess.PIPE, stderr=err, text=True
        )
        try:
            if rng.random() < 0.25:  # anywhere: start-up, opening, trimming a previous tail, appending
                time.sleep(rng.uniform(0.2, 0.8))
            else:  # while appending
                line = proc.stdout.readline()
                assert line.startswith("ready"), f"writer did not start: {log.read_text()}"
                time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, f"writer died by itself ({proc.returncode}): {log.read_text()}"


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_committed_episode(tmp_path: Path) -> None:
    path = tmp_path / "crash.zarr"
    EpisodeStore.create(
        path,
        env_id="crash-test",
        frame_size=writer.FRAME_SIZE,
        fps=10,
        action_space=writer.ACTION_SPACE,
        state_spec=writer.STATE_SPEC,
        chunk_frames=writer.CHUNK_FRAMES,
    ).close()
    rng = np.random.default_rng(0)
    committed, kills_with_tail = 0, 0
    for _ in range(KILLS):
        kill_writer_at_random(path, rng, tmp_path / "writer.log")
        store = EpisodeStore.open(path, "r")
        assert store.num_episodes >= committed, "a committed episode disappeared"
        kills_with_tail += store.uncommitted_rows > 0
        check_store(store, first=committed)  # every newly committed episode, bit-exact
        committed = store.num_episodes

    # The kills must really have interrupted appends (data written past the last commit), or this
    # test would not be testing recovery.
    assert kills_with_tail >= 3, f"only {kills_with_tail} of {KILLS} kills left an uncommitted tail"
    assert committed >= 5

    # Appending after the crashes continues cleanly from the last committed episode.
    with EpisodeStore.open(path, "a") as store:
        assert store.uncommitted_rows == 0
        assert not list(path.rglob("*.partial")), "stray zarr temporaries were not removed"
        for i in range(committed, committed + 3):
            assert store.append_episode(**writer.expected_episode(SEED, i)) == i
    store = EpisodeStore.open(path, "r")
    assert store.num_episodes == committed + 3
    check_store(store)  # all of it, from episode 0


def test_writer_lock_is_released_when_the_writer_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "lock.zarr"
    EpisodeStore.create(path, env_id="t", frame_size=writer.FRAME_SIZE, fps=10, action_space=writer.ACTION_SPACE,
                        state_spec=writer.STATE_SPEC).close()
    proc = subprocess.Popen([sys.executable, str(WRITER), str(path), str(SEED)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("ready")
        with pytest.raises(ValueError, match="already open for appending"):
            EpisodeStore.open(path, "a")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    EpisodeStore.open(path, "a").close()
