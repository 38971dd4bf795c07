"""The inverse-dynamics model learns the probe world's pusher actions from a real episode store."""

import numpy as np
import torch
import pytest

from worldsim.config import CollectConfig, EnvConfig
from worldsim.data.collect import collect
from worldsim.data.store import EpisodeStore
from worldsim.eval.idm import IDMConfig, frame_pairs, idm_accuracy, pairs_from_store, train_idm


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("idm") / "probe.zarr"
    env = EnvConfig(name="probe", size=48, max_episode_steps=40, kwargs={"family": "push"})
    collect(CollectConfig(env=env, out=str(path), episodes=28, num_envs=1, vector="sync", progress=False))
    return path


def test_idm_learns_pusher_actions_well_above_chance(store_path):
    with EpisodeStore.open(store_path) as store:
        train_x, train_y = pairs_from_store(store, list(range(24)))
        test_x, test_y = pairs_from_store(store, [24, 25, 26, 27])
    assert train_x.shape == (24 * 40, 2, 48, 48, 3) and set(np.unique(train_y)) == set(range(5))
    model = train_idm(train_x, train_y, 5, IDMConfig(steps=150, channels=16))
    acc = idm_accuracy(model, test_x, test_y)
    assert acc > 0.6, acc  # chance is 0.2 (five actions)
    # Frames that do not follow the actions (the pair shown backwards) fool it: the metric can fail.
    assert idm_accuracy(model, test_x[:, ::-1].copy(), test_y) < acc - 0.3


def test_pairs_and_bad_inputs():
    frames = np.zeros((2, 4, 8, 8, 3), np.uint8)
    frames[:, :, 0, 0, 0] = np.arange(4)
    pairs, labels = frame_pairs(frames, np.array([[0, 1, 2], [3, 4, 0]]))
    assert pairs.shape == (6, 2, 8, 8, 3) and labels.tolist() == [0, 1, 2, 3, 4, 0]
    assert pairs[1, 0, 0, 0, 0] == 1 and pairs[1, 1, 0, 0, 0] == 2
    with pytest.raises(ValueError, match="actions \\(E, T\\)"):
        frame_pairs(frames, np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="labels must lie"):
        train_idm(pairs, labels + 3, 5)


def test_accuracy_on_a_subset_of_actions():
    class Fixed(torch.nn.Module):  # predicts action 1 for every pair
        def forward(self, pairs):
            out = torch.zeros(len(pairs), 5)
            out[:, 1] = 1.0
            return out

    pairs = np.zeros((6, 2, 8, 8, 3), np.uint8)
    labels = np.array([1, 1, 2, 2, 3, 0])
    assert idm_accuracy(Fixed(), pairs, labels) == pytest.approx(2 / 6)
    assert idm_accuracy(Fixed(), pairs, labels, only=(1, 2)) == pytest.approx(0.5)
    assert idm_accuracy(Fixed(), pairs, labels, only=(1,)) == 1.0
    assert np.isnan(idm_accuracy(Fixed(), pairs, labels, only=(4,)))
