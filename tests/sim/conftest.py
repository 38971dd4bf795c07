"""Fixtures of the simulator tests: a tiny real export (random weights) and a tiny episode store."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_world_model import ACTIONS, FRAME, make_export


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def store_path(tmp_path_factory):
    from worldsim.data.store import EpisodeStore

    path = tmp_path_factory.mktemp("data") / "tiny.zarr"
    rng = np.random.default_rng(0)
    with EpisodeStore.create(path, env_id="test", frame_size=(FRAME, FRAME), fps=15.0, action_space=ACTIONS) as store:
        for length in (12, 9, 3):
            obs = rng.integers(0, 256, (length + 1, FRAME, FRAME, 3), dtype=np.uint8)
            store.append_episode(obs, rng.integers(0, 5, (length, 1)))
    return str(path)
