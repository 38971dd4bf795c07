"""Training samples shaped like rollout context: latent frames picked by the simulator's context schemes.

At rollout the simulator conditions frame L on ``scheme.select(L)`` (`worldsim.context`):
sparse, far-apart frames with their true time indices. So the DiT sees such index sets in
training, a micro-batch can be cut from a long window the same way: draw a scheme and a history
length L, keep the selected latent frames plus the `targets` frames from L on, and pass their true
positions as ``frame_index`` (the rotary embedding then sees the real gaps). One draw per
micro-batch keeps every sample the same length, and the objective is told that exactly the selected
frames are clean context (`context_frames`), the split a rollout presents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class ContextSamplingConfig:
    """Which context patterns the DiT trains on (task=dit); off when `schemes` is empty."""

    schemes: list[str] = field(default_factory=list)  # e.g. [autoregressive, long-range, hierarchical]; [] = plain windows
    budget: int = 4  # context latent frames per sample, as the simulator's context_budget
    targets: int = 1  # frames denoised after the context (the simulator generates one per step)
    prob: float = 0.5  # probability that a micro-batch is a scheme subset instead of the plain window

    def __post_init__(self) -> None:
        self.schemes = list(self.schemes)
        if self.schemes:
            from worldsim.context import SCHEMES

            unknown = sorted(set(self.schemes) - set(SCHEMES))
            if unknown:
                raise ValueError(f"unknown context schemes {unknown}; known: {', '.join(SCHEMES)}")
        if self.budget < 1 or self.targets < 1 or not 0.0 <= self.prob <= 1.0:
            raise ValueError("context.budget and context.targets must be >= 1 and context.prob in [0, 1]")


def select_frames(cfg: ContextSamplingConfig, num_frames: int, generator: torch.Generator) -> Tensor | None:
    """Latent frame positions for one micro-batch: int64 (n,) sorted, or None for the plain window.

    Draws (from `generator`) whether to use a scheme, which one, and the history length
    L in [1, num_frames - targets]; returns ``scheme.select(L) + [L, ..., L + targets - 1]``.
    """
    if not cfg.schemes or num_frames <= cfg.targets:
        return None
    device = generator.device
    use = torch.rand((), generator=generator, device=device).item() < cfg.prob
    which = int(torch.randint(len(cfg.schemes), (), generator=generator, device=device))
    history = int(torch.randint(1, num_frames - cfg.targets + 1, (), generator=generator, device=device))
    if not use:
        return None
    from worldsim.context import ContextScheme

    context = ContextScheme(cfg.schemes[which], cfg.budget).select(history)
    return torch.tensor(context + list(range(history, history + cfg.targets)), dtype=torch.int64)
