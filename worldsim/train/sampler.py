"""A resumable distributed sampler: each rank reads different windows, and a run can continue mid-epoch.

Epoch e visits a permutation of all windows drawn from ``seed + e``; rank r of W takes positions
``r, r + W, r + 2W, ...`` of it (torch's DistributedSampler convention), so after ``c`` samples
consumed globally every rank has read its share of the first ``c`` positions. Resuming at
``(epoch, consumed)`` therefore continues with the same windows at any number of processes, as
long as ``c`` is a multiple of the world size (it is: whole global batches).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableDistributedSampler(Sampler[int]):
    """Indices of this rank's windows for one epoch, starting after `consumed` global samples."""

    def __init__(self, num_items: int, rank: int, world_size: int, seed: int, global_batch: int) -> None:
        if num_items < global_batch:
            raise ValueError(
                f"the store has {num_items} windows, fewer than one global batch of {global_batch} "
                "(batch_size x grad_accum x processes): collect more data or use a smaller batch"
            )
        self.num_items, self.rank, self.world_size, self.seed = num_items, rank, world_size, seed
        self.global_batch = global_batch
        self.epoch = 0
        self.consumed = 0  # global samples of this epoch already trained on

    @property
    def epoch_samples(self) -> int:
        """Global samples per epoch: whole global batches only (the tail is dropped)."""
        return self.num_items // self.global_batch * self.global_batch

    def set_position(self, epoch: int, consumed: int) -> None:
        if consumed % self.world_size:
            raise ValueError(f"cannot resume after {consumed} samples at {self.world_size} processes: not a multiple")
        self.epoch, self.consumed = epoch, consumed

    def advance(self, samples: int) -> None:
        """Record `samples` more global samples consumed; rolls over to the next epoch at its end."""
        self.consumed += samples
        if self.consumed >= self.epoch_samples:
            self.epoch, self.consumed = self.epoch + 1, 0

    def permutation(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.num_items, generator=g)[: self.epoch_samples]  # int64 (epoch_samples,)

    def __iter__(self) -> Iterator[int]:
        perm = self.permutation()
        return iter(perm[self.consumed + self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return (self.epoch_samples - self.consumed) // self.world_size

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}
