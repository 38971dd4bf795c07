"""Exponential moving average of the weights, the ones exported for inference.

Every rank keeps a full fp32 copy of every trainable parameter (on the CPU). Under ZeRO-3 a
rank's module holds only a shard, so `update` is called inside `engine.gathered(...)`: the full
parameters are gathered, averaged in, and released. Each rank does the same arithmetic on the
same gathered values, so the copies stay identical without communication of their own.
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """shadow <- d * shadow + (1 - d) * param, with d = min(decay, (1 + n) / (10 + n)) at update n.

    The warm-up of d (as in many DiT/LDM trainers) keeps the average from being dominated by the
    random initialisation on short runs. decay = 0 tracks the raw weights exactly.
    """

    def __init__(self, named_params: list[tuple[str, nn.Parameter]], decay: float) -> None:
        self.decay = float(decay)
        self.names = [name for name, _ in named_params]
        self.shadow: dict[str, torch.Tensor] = {}
        self.updates = 0

    def initialize(self, named_params: list[tuple[str, nn.Parameter]]) -> None:
        """Copy the current (full, gathered) parameters."""
        self.shadow = {name: p.detach().float().cpu().clone() for name, p in named_params}
        self.updates = 0

    def current_decay(self) -> float:
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, named_params: list[tuple[str, nn.Parameter]]) -> None:
        """Average in the current full parameters (gather them first under ZeRO-3)."""
        d = self.current_decay()
        for name, p in named_params:
            s = self.shadow[name]
            if p.shape != s.shape:
                raise RuntimeError(
                    f"EMA update saw {name} with shape {tuple(p.shape)}, expected {tuple(s.shape)}: "
                    "under ZeRO-3 call update inside engine.gathered(...)"
                )
            s.mul_(d).add_(p.detach().float().cpu(), alpha=1.0 - d)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (safetensors-friendly): the shadow weights and the update count."""
        out = {f"ema.{k}": v for k, v in self.shadow.items()}
        out["ema_updates"] = torch.tensor(self.updates, dtype=torch.int64)
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        shadow = {k[len("ema."):]: v.float().clone() for k, v in state.items() if k.startswith("ema.")}
        missing, extra = sorted(set(self.names) - set(shadow)), sorted(set(shadow) - set(self.names))
        if missing or extra:
            raise ValueError(f"EMA state does not fit the model: missing {missing[:5]}, unexpected {extra[:5]}")
        self.shadow = shadow
        self.updates = int(state["ema_updates"].item())
