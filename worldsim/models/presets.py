"""Size presets of the diffusion transformer: small factory functions in one registry dict.

Each factory returns a `DiTConfig`; keyword overrides set the data-dependent fields (latent
channels, action space, sub-steps, heads on/off) or anything else. Every preset feeds each frame its
previous frame's latent (`previous_frame`: the probe-world learning curves in the README); configs
read from older exports lack the field and keep the plain DiT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from worldsim.models.dit import DiT, DiTConfig


def tiny(**overrides: Any) -> DiTConfig:
    """CPU tests: a forward pass in milliseconds."""
    return DiTConfig(**{"dim": 64, "depth": 2, "heads": 2, "previous_frame": True, **overrides})


def small(**overrides: Any) -> DiTConfig:
    """CPU training on small worlds."""
    return DiTConfig(**{"dim": 256, "depth": 6, "heads": 4, "previous_frame": True, **overrides})


def base(**overrides: Any) -> DiTConfig:
    """One GPU (DiT-B widths)."""
    return DiTConfig(**{"dim": 768, "depth": 12, "heads": 12, "previous_frame": True, **overrides})


def large(**overrides: Any) -> DiTConfig:
    """Several GPUs under ZeRO (DiT-L widths)."""
    return DiTConfig(**{"dim": 1024, "depth": 24, "heads": 16, "previous_frame": True, **overrides})


PRESETS: dict[str, Callable[..., DiTConfig]] = {"tiny": tiny, "small": small, "base": base, "large": large}


def dit_config(name: str, **overrides: Any) -> DiTConfig:
    """The preset `name` with `overrides` applied; ValueError naming the known presets otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown DiT preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name](**overrides)


def build_dit(name: str, **overrides: Any) -> DiT:
    """A freshly initialised DiT of preset `name`."""
    return DiT(dit_config(name, **overrides))


def parameter_count(config: DiTConfig) -> int:
    """Number of parameters of a DiT built from `config` (counted on the meta device, no memory)."""
    with torch.device("meta"):
        model = DiT(config)
    return sum(p.numel() for p in model.parameters())


def preset_table(**overrides: Any) -> list[dict[str, Any]]:
    """One row per preset: name, dim, depth, heads, parameters (with `overrides` applied to each)."""
    rows = []
    for name in PRESETS:
        config = dit_config(name, **overrides)
        rows.append({"name": name, "dim": config.dim, "depth": config.depth, "heads": config.heads,
                     "parameters": parameter_count(config)})
    return rows
