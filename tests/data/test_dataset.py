"""WindowDataset: the right rows, lazily opened per process, with workers and distributed samplers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch.utils.data import DataLoader, DistributedSampler

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore

H, W = 8, 10
LENGTHS = [12, 3, 20, 7, 15]  # frames per episode


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ds") / "s.zarr"
    rng = np.random.default_rng(0)
    with EpisodeStore.create(path, env_id="t", frame_size=(H, W), fps=10, action_space=spaces.Box(-1, 1, (2,)),
                             state_spec={"pos": ((3,), np.int32)}, chunk_frames=4) as store:
        for n in LENGTHS:
            store.append_episode(
                rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8),
                action=rng.uniform(-1, 1, (n - 1, 2)).astype(np.float32),
                reward=rng.normal(size=n - 1),
                terminated=np.arange(n - 1) == n - 2,
                state={"pos": rng.integers(0, 9, (n, 3))},
            )
    return path


def test_items_are_the_store_rows(store_path: Path) -> None:
    store = EpisodeStore.open(store_path)
    for frame_skip in (1, 2):
        ds = WindowDataset(store_path, window=4, frame_skip=frame_skip)
        span = 3 * frame_skip + 1
        assert len(ds) == sum(max(0, n - span + 1) for n in LENGTHS)
        for i in range(len(ds)):
            item = ds[i]
            s = item["start"]
            assert isinstance(s, int) and s == ds.starts[i]
            for key in store.keys():
                np.testing.assert_array_equal(item[key].numpy(), store.read(key, s, s + span)[::frame_skip])
            assert item["obs"].dtype == torch.uint8 and item["obs"].shape == (4, H, W, 3)
            assert item["action"].dtype == torch.float32 and item["action"].shape == (4, 2)
            assert item["has_action"].dtype == torch.bool and item["reward"].dtype == torch.float32
            # Never across a boundary: only the window's first frame may be an episode's first frame.
            assert item["has_action"][1:].all()
            assert not item["terminated"][:-1].any()


def test_keys_subset_and_errors(store_path: Path) -> None:
    ds = WindowDataset(store_path, window=2, keys=["obs", "state/pos"])
    assert set(ds[0]) == {"obs", "state/pos", "start"}
    with pytest.raises(KeyError, match="unknown keys"):
        WindowDataset(store_path, window=2, keys=["obs", "depth"])
    with pytest.raises(ValueError, match="no window of 21 frames"):
        WindowDataset(store_path, window=21)
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_return_what_direct_indexing_returns(store_path: Path, context: str) -> None:
    ds = WindowDataset(store_path, window=3, frame_skip=2)
    ds[0]  # the parent has a store open: forked workers must not reuse it
    loader = DataLoader(ds, batch_size=5, num_workers=2, multiprocessing_context=context, shuffle=False)
    batches = list(loader)
    got = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
    assert got["start"].tolist() == ds.starts.tolist()
    for i in range(len(ds)):
        for key, value in ds[i].items():
            if key != "start":
                assert torch.equal(got[key][i], value), (key, i)


def test_distributed_sampler_ranks_are_disjoint_and_cover(store_path: Path) -> None:
    ds = WindowDataset(store_path, window=2)
    assert len(ds) % 2 == 0  # so DistributedSampler pads nothing
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        loader = DataLoader(ds, batch_size=4, sampler=sampler)
        seen.append({s for batch in loader for s in batch["start"].tolist()})
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(ds.starts.tolist())


def test_action_free_store_gives_empty_actions(tmp_path: Path) -> None:
    path = tmp_path / "video.zarr"
    with EpisodeStore.create(path, env_id="video", frame_size=(H, W), fps=30, action_space=None) as store:
        store.append_episode(np.full((6, H, W, 3), 7, np.uint8))
    item = WindowDataset(path, window=5)[1]
    assert item["action"].shape == (5, 0) and not item["has_action"].any()
    assert (item["obs"] == 7).all()
