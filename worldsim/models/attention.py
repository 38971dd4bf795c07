"""Self-attention that is causal at frame granularity, with 3-D rotary positions and past keys/values."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from worldsim.hardware import cpu_has_amx
from worldsim.models.rotary import apply_rotary


def frame_causal_mask(frames: int, tokens_per_frame: int, past_frames: int = 0, device: torch.device | None = None) -> Tensor:
    """Bool (L_q, L_k) mask, True where a query may attend.

    Queries are the `frames * tokens_per_frame` tokens of the new frames; keys are the
    `past_frames` cached frames followed by the new frames. A token of new frame i sees every
    token of every cached frame and of new frames j <= i (its own frame included).
    """
    q_frame = torch.arange(frames, device=device).repeat_interleave(tokens_per_frame) + past_frames
    k_frame = torch.arange(past_frames + frames, device=device).repeat_interleave(tokens_per_frame)
    return k_frame[None, :] <= q_frame[:, None]  # (L_q, L_k)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Scaled dot-product attention of q (B, heads, L, d) over k, v (B, heads, S, d); `mask` bool, True = attend.

    On a CPU without AMX, in bf16 without gradients (the simulator's step), as two batched matmuls around a bf16
    softmax: at the simulator's shapes (81 queries over 9 frames of 81 keys, batch 32, 2 heads of 64) that takes
    9.5 ms against 17.5 for PyTorch's fused CPU kernel (one thread, loaded 2-core AVX-512-BF16 EPYC), and lies as
    close to an fp32-softmax reference (largest error 1e-3 against 6e-3). On an AMX CPU the fused kernel wins and
    is closer to fp32: 3.2 against 4.3 ms over 405 keys and 5.1 against 8.4 over 729 with one thread, largest
    error 0.002 against 0.007 (2-core Xeon, quiet). Everywhere else: `F.scaled_dot_product_attention`.
    """
    if q.device.type != "cpu" or torch.is_grad_enabled() or torch.bfloat16 not in (q.dtype, k.dtype):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    if cpu_has_amx():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(scores.softmax(dim=-1), v)


class RMSNorm(nn.RMSNorm):
    """`nn.RMSNorm` whose weight follows the input's dtype, so bf16 autocast keeps the fused kernel."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.to(x.dtype)
        return F.rms_norm(x, self.normalized_shape, weight, self.eps)


class FrameCausalAttention(nn.Module):
    """Multi-head self-attention with optional QK RMS-norm, rotary positions and cached keys/values."""

    def __init__(self, dim: int, heads: int, qk_norm: bool) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None, past: tuple[Tensor, Tensor] | None = None,
        in_place: bool = False, slots: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, L, dim), rope (cos, sin) each (B, L, head_dim / 2), mask (L, L_past + L) bool, or
        (B, 1, L, L_past + L) for a batch whose samples differ (padded caches), or None (attend to everything).

        Returns the output (B, L, dim) and this call's keys and values, each (B, heads, L, head_dim),
        keys already rotated, ready to be cached. `in_place`: the last L positions of `past` are room
        for this call's keys and values (a cache with spare frames): they are written there, not concatenated.
        `slots` (B,) long: `past` is a buffer of frame slots of L tokens each and sample b's keys and values
        (L = one frame) are written into its slot `slots[b]` (a `KVCache` in slot layout).
        """
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        q, k = apply_rotary(self.q_norm(q), *rope), apply_rotary(self.k_norm(k), *rope)
        new = (k, v)
        if past is not None and slots is not None:
            batch, heads, length, head_dim = k.shape
            rows = torch.arange(batch, device=k.device)
            for buffer, new_kv in zip(past, (k, v)):  # (B, heads, S, L, hd)[b, :, slots[b]] = (B, heads, L, hd)[b]
                buffer.view(batch, heads, -1, length, head_dim)[rows, :, slots] = new_kv.to(buffer.dtype)
            k, v = past
        elif past is not None and in_place:
            length = k.shape[2]
            past[0][:, :, -length:].copy_(k)
            past[1][:, :, -length:].copy_(v)
            k, v = past
        elif past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, heads, L_past + L, head_dim)
        out = attend(q, k, v, mask)  # (B, heads, L, head_dim)
        return self.proj(rearrange(out, "b h l d -> b l (h d)")), new
