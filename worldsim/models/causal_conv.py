"""Convolutions and resampling that are causal in time, with the first frame on its own.

Layout inside the autoencoder is ``(B, C, T, H, W)``. Causality rules shared by every layer here:

* Time is padded only on the past side, by **replicating the first frame** (as in MAGVIT-v2 and
  CogVideoX). Replication rather than zeros makes a single image behave like a still video whose
  past looks the same, so a one-frame clip is encoded the same way as the first frame of a clip.
* Output frame ``t`` depends only on input frames ``<= t`` (stride 1), so running a layer on a
  prefix of the frames gives exactly a prefix of the outputs.
* Temporal downsampling by 2 maps ``T = 1 + 2n`` frames to ``1 + n``: frame 0 alone, then frames
  ``(1, 2), (3, 4), ...`` in pairs. Upsampling is the mirror: ``1 + n -> 1 + 2n``.
* Space is zero-padded symmetrically, frame by frame (nothing in space is causal).

Streaming. A `CausalConv3d` (and the time-doubling `Upsample`) can run one chunk of frames at a
time with the same outputs as one pass over the whole video: given a `stream` dict it takes its
past inputs from there (the first chunk is padded by replicating its first frame, as in one pass)
and leaves its last ``kernel - stride`` inputs for the next chunk (a time-halving conv's later
chunks come in whole pairs of frames, so the encoder streams too). The dict maps each layer to
a tensor whose first dimension is the batch, so the states of several videos stack along it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn


def pad_past(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Prepend ``frames`` copies of the first frame along time: ``(B, C, T, H, W) -> (B, C, T+frames, H, W)``."""
    if frames == 0:
        return x
    first = repeat(x[:, :, :1], "b c 1 h w -> b c t h w", t=frames)
    return torch.cat([first, x], dim=2)


class CausalConv3d(nn.Module):
    """A 3D convolution that pads time only in the past (replicating frame 0) and space symmetrically.

    With ``time_stride=1`` it maps ``T -> T`` frames; with ``time_stride=2`` and an odd kernel it maps
    ``1 + 2n -> 1 + n``, the first output seeing only frame 0 and output ``j`` seeing frames
    ``2j - kernel + 1 .. 2j`` (the pair ``(2j-1, 2j)`` plus earlier context).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        time_kernel: int | None = None,
        time_stride: int = 1,
        space_stride: int = 1,
    ):
        super().__init__()
        time_kernel = kernel_size if time_kernel is None else time_kernel
        if kernel_size % 2 != 1:
            raise ValueError(f"spatial kernel_size must be odd, got {kernel_size}")
        if time_stride > 1 and time_kernel < time_stride:
            raise ValueError(f"time_kernel {time_kernel} must be >= time_stride {time_stride} to see every frame")
        self.time_pad = time_kernel - 1  # all of it in the past
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            kernel_size=(time_kernel, kernel_size, kernel_size),
            stride=(time_stride, space_stride, space_stride),
            padding=(0, kernel_size // 2, kernel_size // 2),
        )

    def forward(self, x: torch.Tensor, stream: dict | None = None) -> torch.Tensor:
        if stream is None:
            return self.conv(pad_past(x, self.time_pad))  # (B, C_out, T', H', W')
        # Streaming keeps the inputs the next chunk's first output reads before it: kernel - stride of them
        # (a time-halving conv of kernel 3: the last frame, as its next output reads frames 2j - 2, 2j - 1, 2j).
        # A stride-2 conv's chunks after the first come in whole pairs of frames.
        stride = self.conv.stride[0]
        past = stream.get(self)
        if past is not None and x.shape[2] % stride:
            raise ValueError(f"a time-stride-{stride} causal conv streams chunks of a multiple of {stride} frames, "
                             f"got {x.shape[2]}")
        full = pad_past(x, self.time_pad) if past is None else torch.cat([past.to(x.dtype), x], dim=2)
        keep = self.time_pad + 1 - stride
        if keep > 0:
            stream[self] = full[:, :, full.shape[2] - keep:]
        return self.conv(full)


class Downsample(nn.Module):
    """Halve H and W (and optionally T, first frame alone) with one strided causal conv."""

    def __init__(self, channels: int, time: bool):
        super().__init__()
        self.time = time
        self.conv = CausalConv3d(channels, channels, 3, time_stride=2 if time else 1, space_stride=2)

    def forward(self, x: torch.Tensor, stream: dict | None = None) -> torch.Tensor:
        return self.conv(x, stream)  # (B, C, T, H, W) -> (B, C, 1 + (T-1)/2 or T, H/2, W/2); a later chunk: T/2 or T


class Upsample(nn.Module):
    """Double H and W (and optionally T as ``1 + n -> 1 + 2n``) by nearest repeat, then a causal conv.

    A streaming chunk after the first, without gradients (the simulator's step), takes a cheaper road to the same
    frames: repeating pixels and frames and then convolving is a convolution of the low-resolution frames whose
    kernel depends on where each output pixel and frame falls in its 2 x 2 x 2 block (`_folded`). It reads each
    latent frame once instead of eight times: a third of the multiply-adds, and no full-resolution input written.
    """

    def __init__(self, channels: int, time: bool):
        super().__init__()
        self.time = time
        self.conv = CausalConv3d(channels, channels, 3)
        self._fold: tuple | None = None  # (weight version key, folded weight, folded bias)

    def forward(self, x: torch.Tensor, stream: dict | None = None) -> torch.Tensor:
        if self.time:
            started = stream is not None and self in stream  # a later chunk: no frame 0 in it
            if started and not torch.is_grad_enabled() and self.conv.conv.kernel_size == (3, 3, 3):
                return self._folded(x, stream)
            if started:
                x = x.repeat_interleave(2, dim=2)
            else:  # frame 0 stays one frame; every later latent frame becomes two
                first, rest = x[:, :, :1], x[:, :, 1:]
                x = torch.cat([first, rest.repeat_interleave(2, dim=2)], dim=2)  # (B, C, 1 + 2n, H, W)
            if stream is not None:
                stream[self] = torch.ones(x.shape[0], 1, device=x.device)  # "frame 0 seen", per video
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")  # (B, C, T, 2H, 2W)
        return self.conv(x, stream)

    def _folded(self, x: torch.Tensor, stream: dict) -> torch.Tensor:
        """Streaming chunk x (B, C, n, H, W) -> (B, C, 2n, 2H, 2W), as repeat + interpolate + the causal conv give.

        The conv's past inputs are two copies of the last latent frame upsampled (every latent frame becomes two
        equal frames), so an output frame's three time taps fall on the previous latent frame and this one: the
        first of a pair weighs them W0 + W1 and W2, the second W0 and W1 + W2. In space an output pixel's three
        taps fall on two low-resolution rows (and columns): the even one weighs the row above W0 and its own
        W1 + W2, the odd one its own W0 + W1 and the row below W2. One 2 x 3 x 3 convolution with 8C outputs (a
        pair's two frames x the 2 x 2 pixels of a block) holds all of them, zero where a parity has no tap.
        """
        past = stream[self.conv]  # (B, C, 2, 2H, 2W): the last latent frame, repeated and upsampled
        weight, bias = self._fold_weights()
        frames = torch.cat([past[:, :, -1:, ::2, ::2], x], dim=2)  # (B, C, 1 + n, H, W)
        out = F.conv3d(frames, weight, bias, padding=(0, 1, 1))  # (B, 8C, n, H, W)
        stream[self.conv] = F.interpolate(x[:, :, -1:], scale_factor=(2.0, 2.0, 2.0), mode="nearest")
        return rearrange(out, "b (t a c o) n h w -> b o (n t) (h a) (w c)", t=2, a=2, c=2)

    def _fold_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        conv = self.conv.conv
        key = (conv.weight.data_ptr(), conv.weight._version, conv.weight.dtype, conv.weight.device)
        if self._fold is None or self._fold[0] != key:
            w = conv.weight.detach().float()  # (O, I, 3, 3, 3)
            time = w.new_tensor([[[1, 1, 0], [0, 0, 1]], [[1, 0, 0], [0, 1, 1]]])  # (pair frame, prev/this, tap)
            space = w.new_tensor([[[1, 0, 0], [0, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 1, 0], [0, 0, 1]]])  # (parity, row, tap)
            folded = torch.einsum("tpu,arv,csw,oiuvw->tacoiprs", time, space, space, w).flatten(0, 3)  # (8 O, I, 2, 3, 3)
            bias = conv.bias.detach().repeat(8) if conv.bias is not None else None
            self._fold = (key, folded.to(conv.weight.dtype), bias)
        return self._fold[1], self._fold[2]
