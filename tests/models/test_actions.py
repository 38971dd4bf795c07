from collections import OrderedDict

import numpy as np
import pytest
import torch
from gymnasium import spaces

from worldsim.models.actions import ActionEncoder
from worldsim.spaces import pack_action, packed_dim



DIM = 16


def _encoder(space, substeps=1):
    torch.manual_seed(0)
    return ActionEncoder(space, DIM, substeps)


def _all(actions):
    return torch.ones(actions.shape[:3], dtype=torch.bool)


def _pack(space, batch):
    """(B, T=1, k=len(batch[0]), D) packed with worldsim.spaces."""
    return torch.tensor(np.array([[[pack_action(space, a) for a in sub]] for sub in batch]))


def test_discrete_actions_get_distinct_embeddings():
    space = spaces.Discrete(4, start=1)
    enc = _encoder(space)
    actions = _pack(space, [[1], [2], [3], [4]])  # packed as 0..3
    out = enc(actions, _all(actions))
    assert out.shape == (4, 1, DIM)
    assert torch.cdist(out[:, 0], out[:, 0]).add(torch.eye(4)).min() > 1e-4


def test_multidiscrete_every_component_matters():
    space = spaces.MultiDiscrete([3, 2, 5])
    enc = _encoder(space)
    base = np.array([1, 0, 2])
    batch = [[base]] + [[base + np.eye(3, dtype=int)[i]] for i in range(3)]
    actions = _pack(space, batch)
    out = enc(actions, _all(actions))
    for i in range(1, 4):
        assert not torch.allclose(out[0], out[i])


def test_box_floats_are_embedded_and_scaled_by_bounds():
    space = spaces.Box(low=np.array([-10.0, 0.0], np.float32), high=np.array([10.0, 1.0], np.float32), dtype=np.float32)
    enc = _encoder(space)
    actions = torch.tensor([[[[0.0, 0.5]]], [[[10.0, 0.5]]], [[[0.0, 1.0]]]])
    out = enc(actions, _all(actions))
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[0], out[2])
    # both axes are mapped to [-1, 1]: the bounds' centre is 0 and the top of each range is 1
    embed = enc.embeds[0]
    torch.testing.assert_close((actions[1:2, 0, 0] - embed.center) / embed.half_range, torch.tensor([[1.0, 0.0]]))


def test_dict_sums_its_leaves_and_each_leaf_matters():
    space = spaces.Dict(OrderedDict(
        move=spaces.Discrete(3),
        camera=spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
        keys=spaces.Dict(OrderedDict(jump=spaces.MultiDiscrete([2, 2]))),
    ))
    enc = _encoder(space)
    assert enc.packed_dim == packed_dim(space) == 5
    a = OrderedDict(move=1, camera=np.array([0.1, -0.2], np.float32), keys=OrderedDict(jump=np.array([0, 1])))
    variants = [a,
                {**a, "move": 2},
                {**a, "camera": np.array([0.5, -0.2], np.float32)},
                {**a, "keys": OrderedDict(jump=np.array([1, 1]))}]
    actions = _pack(space, [[v] for v in variants])
    out = enc(actions, _all(actions))
    for i in range(1, 4):
        assert not torch.allclose(out[0], out[i])


def test_fully_masked_frames_get_exactly_the_null_embedding_whatever_the_values():
    enc = _encoder(spaces.Discrete(5), substeps=2)
    actions = torch.tensor([[[[1], [99]], [[-7], [3]]]])  # garbage is allowed where masked
    mask = torch.tensor([[[False, False], [False, False]]])
    out = enc(actions, mask)
    torch.testing.assert_close(out, enc.null.expand(1, 2, DIM))
    torch.testing.assert_close(enc.null_embedding(1, 2), out)


def test_masked_substeps_do_not_depend_on_their_values_and_order_matters():
    enc = _encoder(spaces.Discrete(5), substeps=2)
    mask = torch.tensor([[[True, False]]])
    a = enc(torch.tensor([[[[1], [2]]]]), mask)
    b = enc(torch.tensor([[[[1], [4]]]]), mask)
    torch.testing.assert_close(a, b)
    full = torch.ones(1, 1, 2, dtype=torch.bool)
    assert not torch.allclose(a, enc(torch.tensor([[[[1], [2]]]]), full))  # masking changes the result
    swapped = enc(torch.tensor([[[[2], [1]]]]), full)
    assert not torch.allclose(enc(torch.tensor([[[[1], [2]]]]), full), swapped)  # sub-step order is seen


def test_errors_name_the_problem_and_the_space():
    enc = _encoder(spaces.Discrete(5), substeps=2)
    ok_mask = torch.ones(1, 1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"Discrete\(5\)"):
        enc(torch.zeros(1, 1, 2, 3), ok_mask)  # wrong D
    with pytest.raises(ValueError, match="expected"):
        enc(torch.zeros(1, 1, 3, 1), torch.ones(1, 1, 3, dtype=torch.bool))  # wrong k
    with pytest.raises(ValueError, match=r"outside \[0, 5\).*|Discrete\(5\)"):
        enc(torch.tensor([[[[1], [5]]]]), ok_mask)
    with pytest.raises(ValueError, match="Discrete"):
        enc(torch.tensor([[[[-1], [0]]]]), ok_mask)
    with pytest.raises(ValueError, match="integer"):
        enc(torch.tensor([[[[0.5], [0.0]]]]), ok_mask)
    with pytest.raises(ValueError, match="bool"):
        enc(torch.zeros(1, 1, 2, 1), torch.ones(1, 1, 2))
    md = _encoder(spaces.Dict(OrderedDict(a=spaces.Discrete(2), b=spaces.MultiDiscrete([3, 4]))))
    with pytest.raises(ValueError, match=r"'b'.*outside \[0, 4\)"):
        md(torch.tensor([[[[1, 2, 4]]]]), torch.ones(1, 1, 1, dtype=torch.bool))
    box = _encoder(spaces.Box(-1, 1, shape=(2,)))
    with pytest.raises(ValueError, match="NaN"):
        box(torch.tensor([[[[float("nan"), 0.0]]]]), torch.ones(1, 1, 1, dtype=torch.bool))
    box(torch.tensor([[[[float("nan"), 0.0]]]]), torch.zeros(1, 1, 1, dtype=torch.bool))  # masked: fine
