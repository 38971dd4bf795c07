import pytest
import torch
import torch.nn.functional as F

from worldsim.models.attention import attend, frame_causal_mask


def _qkv(dtype, batch=3, heads=2, queries=6, keys=15, dim=8):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, heads, n, dim, generator=g).to(dtype) for n in (queries, keys, keys)]


@pytest.mark.parametrize("amx", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "padded"])
def test_inference_attention_in_bf16_matches_the_fused_kernel(mask_kind, amx, monkeypatch):
    """The simulator's bf16 CPU path gives what fp32 SDPA gives, within bf16 rounding, for every mask the DiT
    passes: none, the frame-causal (L_q, L_k) one and a padded batch's (B, 1, L_q, L_k); both ways it takes,
    matmuls around a softmax (CPUs without AMX) and the fused kernel in bf16 (AMX CPUs), whatever this CPU is."""
    import worldsim.models.attention as attention

    monkeypatch.setattr(attention, "cpu_has_amx", lambda: amx)
    q, k, v = _qkv(torch.bfloat16)
    mask = {"none": None, "causal": frame_causal_mask(2, 3, past_frames=3),
            "padded": torch.rand(3, 1, 1, 15, generator=torch.Generator().manual_seed(1)) > 0.3}[mask_kind]
    if mask is not None and mask.dim() == 4:
        mask[..., -6:] = True  # every query sees at least its own frame
    reference = F.scaled_dot_product_attention(*(t.float() for t in (q, k, v)), attn_mask=mask)
    with torch.no_grad():
        out = attend(q, k, v, mask)
    assert out.dtype == torch.bfloat16 and out.shape == reference.shape
    assert (out.float() - reference).abs().max() < 0.03
    shuffled = attend(q, k.flip(2), v, mask)  # and it is attention: other keys, other output
    assert (shuffled.float() - reference).abs().max() > 0.1


def test_attention_with_gradients_or_in_float32_is_the_fused_kernel():
    q, k, v = _qkv(torch.float32)
    with torch.no_grad():
        assert torch.equal(attend(q, k, v, None), F.scaled_dot_product_attention(q, k, v))
    q.requires_grad_(True)
    out = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), None)
    assert torch.equal(out, F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16()))
    out.float().sum().backward()
    assert q.grad is not None
