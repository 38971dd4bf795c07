"""Mixed precision on the CPU: bf16 autocast where the CPU multiplies bf16 natively, fp32 elsewhere.

CPUs differ a lot here (measured with 1 thread, 1024x1024 matmuls): on an AVX2-only CPU a bf16
matmul is emulated and runs at about 1 GFLOP/s against 136 for fp32, so bf16 must never be the
default there; on a CPU with AMX tiles (Sapphire Rapids and later) bf16 runs at about 1,500
GFLOP/s against 200 for fp32, and a training step of the small presets is 1.5-2.8x faster under
autocast (AE tiny 0.45 -> 0.21 s, DiT 256x6 8.6 -> 4.3 s). Autocast keeps fp32 master weights and
optimizer states, so only the matmuls and convolutions drop precision; losses are computed in fp32.
On GPUs DeepSpeed's own bf16 mode is used instead (`worldsim.train.ds_config`).

Only the DiT trains under CPU autocast. The autoencoder stays in fp32: PyTorch 2.13's oneDNN bf16
convolution backward returned NaN weight gradients for the small preset's decoder (a 32-channel
3x3x3 conv on (8, 32, 7, 64, 64) activations; reproducible with random output gradients, not with
random inputs), which would end a long run without warning.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from worldsim.hardware import cpu_has_native_bf16

def cpu_autocast(precision: str, device: torch.device, task: str = "dit") -> bool:
    """Whether to train `task` under bf16 autocast on this CPU: "bf16" demands it, "auto" takes it where native.

    Never for the autoencoder (task "vae"): see the module docstring.
    """
    if device.type != "cpu" or task != "dit":
        return False
    if precision == "bf16":
        return True
    return precision == "auto" and cpu_has_native_bf16()


@contextlib.contextmanager
def autocast(enabled: bool, device: torch.device) -> Iterator[None]:
    """bf16 autocast on `device` when `enabled`, else nothing."""
    if enabled:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
