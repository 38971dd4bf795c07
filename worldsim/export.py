"""Inference export: EMA weights as safetensors plus one JSON config; loading needs no DeepSpeed.

An export folder holds
  config.json              format, kind ("autoencoder" | "dit"), model config, autoencoder config,
                           latent scale/shift, action space (worldsim.spaces JSON), frame size,
                           compression (spatial s, temporal k), the training window, and each weight
                           file's size and sha256
  autoencoder.safetensors  the autoencoder (with its fitted latent shift/scale buffers)
  dit.safetensors          the DiT with its reward/termination heads (kind "dit" only)

A DiT export carries its autoencoder, so the simulator loads this folder alone.

Each weight file also records, in its safetensors metadata, what config.json said when it was written
(frame size, its model config, action space; the DiT also the sha256 of the autoencoder file it was
exported with). Loading compares them, so an edited frame size or an autoencoder swapped in from
another export (with config.json's checksums updated to match) is refused instead of running wrongly.
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
BINDING = "worldsim"  # safetensors metadata key: what config.json said when the weights were written


# The config.json keys `write_export` sets itself; any other key is a record passed in as `extra`.
WRITTEN_KEYS = frozenset({"format", "version", "kind", "autoencoder_config", "dit_config", "latent_shift", "latent_scale",
                          "action_space", "frame_size", "compression", "files"})


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
    size = [int(frame_size[0]), int(frame_size[1])]
    bound = {"frame_size": size, "action_space": action_space}
    save_file(_state(autoencoder), str(folder / files["autoencoder"]),
              metadata={BINDING: json.dumps({**bound, "config": autoencoder.cfg.to_dict()}, sort_keys=True)})
    if dit is not None:
        files["dit"] = "dit.safetensors"
        save_file(_state(dit), str(folder / files["dit"]),
                  metadata={BINDING: json.dumps({**bound, "config": dataclasses.asdict(dit.config),
                                                 "autoencoder_sha256": _sha256(folder / files["autoencoder"])},
                                                sort_keys=True)})
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
    _write_config(folder, config)
    return folder


def write_export_like(folder: str | os.PathLike, autoencoder: VideoAutoencoder, dit: DiT | None, meta: dict[str, Any],
                      **records: Any) -> Path:
    """`write_export` of new weights for an export whose config is `meta`: its frame size, action space and records
    (the keys `write_export` does not set itself) are kept, `records` added (a warm-started or refitted model)."""
    extra = {key: value for key, value in meta.items() if key not in WRITTEN_KEYS}
    return write_export(folder, autoencoder, dit, tuple(meta["frame_size"]), meta["action_space"], {**extra, **records})


def _write_config(folder: Path, config: dict[str, Any]) -> None:
    """config.json written whole or not at all (a temporary file renamed over it)."""
    tmp = folder / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, folder / "config.json")


SERVING = {"context_budget", "reencode"}  # simulator defaults an export may carry (`set_serving`)


def set_serving(folder: str | os.PathLike, **values: int | bool | None) -> dict[str, Any]:
    """Record simulator defaults chosen by evaluating this export in its config.json (`serving`), returned.

    `context_budget`: latent frames attended to per step when `SimConfig.context_budget` is None (instead of
    the training window's context); `reencode` (true / false): generated frames enter the context re-encoded
    when `SimConfig.reencode` is None. A value None removes the entry. The weights and their hashes are untouched.
    """
    unknown = sorted(set(values) - SERVING)
    if unknown:
        raise ValueError(f"unknown serving default(s) {', '.join(unknown)}; known: {', '.join(sorted(SERVING))}")
    for key, value in values.items():
        if key == "reencode" and value is not None and not isinstance(value, bool):
            raise ValueError(f"serving reencode must be true or false, got {value!r}")
        if key == "context_budget" and value is not None and not _positive_int(value):
            raise ValueError(f"serving {key} must be an integer >= 1, got {value!r}")
    folder = Path(folder)
    config = read_export_config(folder)
    if config["kind"] != "dit":
        raise ExportError(f"{folder} is an autoencoder export; serving defaults are for the simulator (DiT exports)")
    serving = {**config.get("serving", {}), **values}
    config["serving"] = {k: v for k, v in serving.items() if v is not None}
    _write_config(folder, config)
    return config["serving"]


def served_context_budget(meta: dict[str, Any], where: str | os.PathLike) -> int | None:
    """The context budget `meta` (an export's config) carries as its serving default, or None; ExportError if bad."""
    budget = (meta.get("serving") or {}).get("context_budget")
    if budget is not None and not _positive_int(budget):
        raise ExportError(f"{where}: config.json's serving.context_budget is {budget!r}; expected an integer >= 1")
    return budget


def served_reencode(meta: dict[str, Any], where: str | os.PathLike) -> bool:
    """Whether `meta` (an export's config) is served with its generated frames re-encoded; ExportError if bad."""
    value = (meta.get("serving") or {}).get("reencode", False)
    if not isinstance(value, bool):
        raise ExportError(f"{where}: config.json's serving.reencode is {value!r}; expected true or false")
    return value


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


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
    if not isinstance(config, dict):
        raise ExportError(f"{path} is not a worldsim export config (a JSON {type(config).__name__}, not an object)")
    if config.get("format") != FORMAT:
        raise ExportError(f"{path} is not a worldsim export config (format {config.get('format')!r})")
    if config.get("version") != VERSION:
        raise ExportError(f"{path} has export version {config.get('version')}, this worldsim reads {VERSION}")
    _check_entries(config, path)
    return config


def _check_entries(config: dict[str, Any], path: Path) -> None:
    """`kind` and the `files` table that loading relies on; ExportError naming the file and the entry otherwise."""
    edited = "(config.json edited or written by something else; export the run again)"
    kind = config.get("kind")
    if kind not in ("autoencoder", "dit"):
        said = "lacks 'kind'" if "kind" not in config else f"has kind {kind!r}"
        raise ExportError(f"{path} {said}; expected 'autoencoder' or 'dit' {edited}")
    files = config.get("files")
    if not isinstance(files, dict):
        said = "lacks 'files'" if "files" not in config else f"has files {json.dumps(files)[:80]}"
        raise ExportError(f"{path} {said}; expected the table of weight files (path, bytes, sha256) {edited}")
    for name in ("autoencoder", "dit") if kind == "dit" else ("autoencoder",):
        entry = files.get(name)
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("bytes"), int)
                and isinstance(entry.get("sha256"), str)):
            raise ExportError(f"{path}: files.{name} is {json.dumps(entry)[:80]}; expected its weight file's path, bytes "
                              f"and sha256 {edited}")


def _check_binding(path: Path, meta: dict[str, Any], config: dict[str, Any] | None, ae_sha256: str | None) -> None:
    """The weights' recorded frame size, config, action space (and autoencoder) against config.json's."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(BINDING)
    except (SafetensorError, OSError) as e:
        raise ExportError(f"cannot read {path}: {e}") from None
    if raw is None:
        return  # written before weights recorded their binding
    bound = json.loads(raw)
    said = {"frame_size": meta.get("frame_size"), "action_space": meta.get("action_space"), "config": config}
    for key, value in said.items():
        if json.dumps(bound.get(key), sort_keys=True) != json.dumps(value, sort_keys=True):
            raise ExportError(f"{path.parent}/config.json says {key} {json.dumps(value)[:120]}, but {path.name} was exported "
                              f"with {json.dumps(bound.get(key))[:120]} (config.json edited, or weights from another export)")
    if ae_sha256 is not None and bound.get("autoencoder_sha256") not in (None, ae_sha256):
        raise ExportError(f"{path.parent}: the autoencoder is not the one {path.name} was exported with "
                          "(autoencoder.safetensors from another export?)")


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
    _check_binding(folder / meta["files"]["autoencoder"]["path"], meta, meta["autoencoder_config"], None)
    ae = models["autoencoder"]
    for name in ("latent_shift", "latent_scale"):
        said = meta.get(name)
        if said is not None and (len(said) != ae.cfg.latent_channels or
                                 not torch.allclose(torch.tensor(said, dtype=torch.float32), getattr(ae, name).float(), atol=1e-6)):
            raise ExportError(f"{folder}/config.json: {name} ({len(said)} values) differs from the autoencoder's own "
                              f"({ae.cfg.latent_channels} channels): config.json edited, or weights from another export")
    if meta["kind"] == "dit":
        try:
            dit_config = DiTConfig(**meta["dit_config"])
        except (KeyError, TypeError, ValueError) as e:
            raise ExportError(f"{folder}/config.json: bad dit_config: {e}") from None
        models["dit"] = DiT(dit_config)
        _load_weights(folder, meta["files"]["dit"], models["dit"], "dit")
        _check_binding(folder / meta["files"]["dit"]["path"], meta, meta["dit_config"], meta["files"]["autoencoder"]["sha256"])
    for m in models.values():
        m.to(device).eval()
    return models, meta
