"""Inference export: EMA weights as safetensors plus one JSON config; loading needs no DeepSpeed.

An export folder holds
  config.json              format, kind ("autoencoder" | "dit"), model config, autoencoder config,
                           latent scale/shift, action space (worldsim.spaces JSON), frame size,
                           compression (spatial s, temporal k), the training window, and each weight
                           file's size and sha256
  autoencoder.safetensors  the autoencoder (with its fitted latent shift/scale buffers)
  dit.safetensors          the DiT with its reward/termination heads (kind "dit" only)

A DiT export carries its autoencoder, so the simulator loads this folder alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from worldsim.models.autoencoder import AutoencoderConfig, VideoAutoencoder
from worldsim.models.dit import DiT, DiTConfig

FORMAT = "worldsim-export"
VERSION = 1


class ExportError(Exception):
    """An export folder that is missing, incomplete, truncated or inconsistent."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def write_export(
    folder: str | os.PathLike,
    autoencoder: VideoAutoencoder,
    dit: DiT | None,
    frame_size: tuple[int, int],
    action_space: dict | None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the export of `autoencoder` (and `dit`) to `folder`; config.json is written last."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not bool(autoencoder.latent_stats_fitted):
        raise ExportError("the autoencoder's latent scale/shift are not fitted; fit them before exporting")
    files = {"autoencoder": "autoencoder.safetensors"}
    save_file(_state(autoencoder), str(folder / files["autoencoder"]))
    if dit is not None:
        files["dit"] = "dit.safetensors"
        save_file(_state(dit), str(folder / files["dit"]))
    ae = autoencoder.cfg
    config = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "dit" if dit is not None else "autoencoder",
        "autoencoder_config": ae.to_dict(),
        "dit_config": None if dit is None else dataclasses.asdict(dit.config),
        "latent_shift": autoencoder.latent_shift.tolist(),
        "latent_scale": autoencoder.latent_scale.tolist(),
        "action_space": action_space,
        "frame_size": [int(frame_size[0]), int(frame_size[1])],
        "compression": {"spatial": ae.spatial_factor, "temporal": ae.temporal_factor},
        "files": {name: {"path": f, "bytes": (folder / f).stat().st_size, "sha256": _sha256(folder / f)}
                  for name, f in files.items()},
        **(extra or {}),
    }
    tmp = folder / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, folder / "config.json")
    return folder


def read_export_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The export's config.json, checked for format and completeness."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"export folder {folder} does not exist")
    path = folder / "config.json"
    if not path.is_file():
        raise ExportError(f"{folder} is not a worldsim export: config.json is missing (incomplete export?)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ExportError(f"{path} is not valid JSON (truncated?): {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ExportError(f"{path} is not a worldsim export config (format {config.get('format')!r})")
    if config.get("version") != VERSION:
        raise ExportError(f"{path} has export version {config.get('version')}, this worldsim reads {VERSION}")
    return config


def _load_weights(folder: Path, entry: dict[str, Any], model: nn.Module, what: str) -> None:
    path = folder / entry["path"]
    if not path.is_file():
        raise ExportError(f"{what} weights {path} are missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise ExportError(f"{what} weights {path} have {size} bytes, config.json says {entry['bytes']} (truncated?)")
    if _sha256(path) != entry["sha256"]:
        raise ExportError(f"{what} weights {path} do not match their sha256 in config.json (corrupt or replaced)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ExportError(f"cannot read {path}: {e}") from None
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # torch's "size mismatch for ...": weights of another architecture
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
        raise ExportError(f"{path} does not fit the {what} config in config.json ({first[:200]}); "
                          "weights and config come from different models") from None
    if result.missing_keys or result.unexpected_keys:
        raise ExportError(f"{path} does not fit the {what} config: missing {result.missing_keys[:5]}, "
                          f"unexpected {result.unexpected_keys[:5]} (weights of another model?)")


def load_export(folder: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """Load an export: ({"autoencoder": VideoAutoencoder, "dit": DiT (kind "dit" only)}, config dict).

    Models are in eval mode on `device`. ExportError names what is missing or wrong.
    """
    folder = Path(folder)
    meta = read_export_config(folder)
    try:
        ae_config = AutoencoderConfig.from_dict(meta["autoencoder_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{folder}/config.json: bad autoencoder_config: {e}") from None
    models: dict[str, nn.Module] = {"autoencoder": VideoAutoencoder(ae_config)}
    _load_weights(folder, meta["files"]["autoencoder"], models["autoencoder"], "autoencoder")
    if meta["kind"] == "dit":
        try:
            dit_config = DiTConfig(**meta["dit_config"])
        except (KeyError, TypeError, ValueError) as e:
            raise ExportError(f"{folder}/config.json: bad dit_config: {e}") from None
        models["dit"] = DiT(dit_config)
        _load_weights(folder, meta["files"]["dit"], models["dit"], "dit")
    for m in models.values():
        m.to(device).eval()
    return models, meta
