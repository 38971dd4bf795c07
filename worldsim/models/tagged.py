"""Small networks (the actor-critic, the frame reward model): the strided conv stack both start with, and
each saved as one safetensors file: weights plus a format tag, the network's JSON config and JSON-able
extras in the file's metadata. No pickle anywhere."""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from safetensors.torch import load_file, save_file
from torch import nn


def strided_convs(in_channels: int, channels: tuple[int, ...] | list[int]) -> tuple[list[nn.Module], int]:
    """Conv 4x4 stride 2 + SiLU per width in `channels` (each halves the frame); returns (layers, last width)."""
    layers: list[nn.Module] = []
    for c in channels:
        layers += [nn.Conv2d(in_channels, c, kernel_size=4, stride=2, padding=1), nn.SiLU()]
        in_channels = c
    return layers, in_channels


def save_tagged(path: str | os.PathLike, module: nn.Module, fmt: str, config: dict[str, Any],
                extra: dict[str, Any] | None = None) -> None:
    """A small network as one safetensors file: its format tag, JSON config and JSON-able `extra` in the
    metadata (no pickle). Read back with `load_tagged`."""
    meta = {"format": fmt, "config": json.dumps(config), "extra": json.dumps(extra or {})}
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(path), metadata=meta)


def load_tagged(path: str | os.PathLike, fmt: str, what: str,
                build: Callable[[dict[str, Any]], nn.Module]) -> tuple[nn.Module, dict[str, Any]]:
    """A network written by `save_tagged` with format `fmt`: `build(config)` makes it, the file fills it.
    Returns (network in eval mode, extra).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a safetensors file, another format (`what` names the expected one), tensors that do not fit.
    """
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise ValueError(f"{path} is not a readable safetensors file: {e}") from e
    if meta.get("format") != fmt:
        raise ValueError(f"{path} does not hold {what} (format {meta.get('format')!r}, expected {fmt!r})")
    net = build(json.loads(meta["config"]))
    state = load_file(str(path))
    missing, unexpected = set(net.state_dict()) - set(state), set(state) - set(net.state_dict())
    if missing or unexpected:
        raise ValueError(f"{path}: tensors missing {sorted(missing)} / unexpected {sorted(unexpected)}")
    net.load_state_dict(state)
    return net.eval(), json.loads(meta.get("extra", "{}"))
