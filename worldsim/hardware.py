"""What this machine can do, read once: its CPU (shared by training's autocast and the simulator's dtype),
and the error for an optional dependency that is not installed.

bf16 matmuls are fast only where the CPU multiplies bf16 in hardware (AMX tiles or AVX512-BF16):
measured with 1 thread, 1024x1024, about 1,500 GFLOP/s against 200 for fp32 on an AMX CPU, and
about 1 GFLOP/s (emulated) against 136 for fp32 on an AVX2-only CPU. So bf16 is chosen by default
only where it is native.
"""

from __future__ import annotations

import functools
from pathlib import Path

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with bf16 matmul in hardware


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AMX or AVX512-BF16), read from /proc/cpuinfo."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def cpu_has_amx() -> bool:
    """True when this CPU has AMX bf16 tiles (Sapphire Rapids and later), where oneDNN's fused kernels are fastest."""
    return "amx_bf16" in cpu_flags()


class MissingDependencyError(RuntimeError):
    """An optional dependency a command needs is not installed; the message says what to install."""
