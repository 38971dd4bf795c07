import pytest
import torch

from worldsim.models.rotary import Rotary3D, apply_rotary, axis_dims




def test_axis_split_covers_head_dim_with_even_parts():
    for head_dim in (8, 16, 32, 64, 72, 128):
        dims = axis_dims(head_dim)
        assert sum(dims) == head_dim and all(d % 2 == 0 and d > 0 for d in dims)
        assert dims[0] >= dims[1] == dims[2]


def test_head_dim_not_divisible_by_8_is_rejected():
    with pytest.raises(ValueError, match="divisible by 8"):
        axis_dims(12)


def _rotated(rope, x, t, h, w):
    cos, sin = rope(t, h, w)
    return apply_rotary(x, cos, sin)


def test_rotation_preserves_norm_and_zero_position_is_identity():
    rope = Rotary3D(32)
    x = torch.randn(2, 3, 5, 32)
    pos = torch.randint(0, 50, (3, 2, 5)).unbind(0)
    y = _rotated(rope, x, *pos)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    zero = torch.zeros(2, 5, dtype=torch.long)
    torch.testing.assert_close(_rotated(rope, x, zero, zero, zero), x)


def test_attention_logits_depend_only_on_relative_positions():
    rope = Rotary3D(32)
    q, k = torch.randn(1, 1, 1, 32), torch.randn(1, 1, 1, 32)
    pos_q = [torch.tensor([[7]]), torch.tensor([[3]]), torch.tensor([[1]])]
    pos_k = [torch.tensor([[2]]), torch.tensor([[5]]), torch.tensor([[4]])]

    def logit(shift):
        a = _rotated(rope, q, *(p + s for p, s in zip(pos_q, shift)))
        b = _rotated(rope, k, *(p + s for p, s in zip(pos_k, shift)))
        return (a * b).sum()

    torch.testing.assert_close(logit((0, 0, 0)), logit((100, 9, 13)), atol=1e-4, rtol=1e-4)
    # every axis matters: moving only the key in one axis changes the logit
    for axis in range(3):
        moved = [p + (3 if i == axis else 0) for i, p in enumerate(pos_k)]
        assert not torch.isclose((_rotated(rope, q, *pos_q) * _rotated(rope, k, *moved)).sum(), logit((0, 0, 0)))
