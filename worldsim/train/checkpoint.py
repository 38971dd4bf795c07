"""Training checkpoints: a DeepSpeed checkpoint plus what makes resumption exact and verifiable.

A checkpoint is the folder ``<run>/checkpoints/step_XXXXXXXX`` holding
  DeepSpeed's files         module, optimizer (sharded per rank under ZeRO)
  meta.json                 step, sampler position, world size, ZeRO stage, the run config, the
                            model kind/config and a checksum of the full weights
  ema.safetensors           the EMA weights (identical on every rank; written by rank 0)
  rng_rank<r>.pt            rank r's RNG states: python, numpy, torch and the noise generator
                            (tensors, ints and tuples only: read back with weights_only=True)
  manifest.json             every file's size, written after all of the above
and ``<run>/checkpoints/latest`` names the newest tag; it is replaced (atomically) only after the
manifest, so a run killed while saving resumes from the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from worldsim.train.engine import CheckpointError

TAG_PREFIX = "step_"


def tag_for(step: int) -> str:
    return f"{TAG_PREFIX}{step:08d}"


# ----------------------------------------------------------------------------- RNG state
def rng_state(noise: torch.Generator) -> dict[str, Any]:
    """Every RNG a training step may draw from, as tensors / ints / tuples."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "noise": noise.get_state(),
    }


def set_rng_state(state: dict[str, Any], noise: torch.Generator) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    noise.set_state(state["noise"])


# ----------------------------------------------------------------------------- locating
def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def resolve(resume: str | os.PathLike) -> tuple[Path, str]:
    """(checkpoints folder, tag) for `resume`: a run folder, its checkpoints folder, or one tag folder."""
    path = Path(resume)
    if not path.exists():
        raise CheckpointError(f"nothing to resume: {path} does not exist")
    if (path / "meta.json").is_file() or (path / "manifest.json").is_file() or path.name.startswith(TAG_PREFIX):
        return path.parent, path.name
    for directory in (checkpoints_dir(path), path):
        latest = directory / "latest"
        if latest.is_file():
            tag = latest.read_text().strip()
            if not (directory / tag).is_dir():
                raise CheckpointError(f"{latest} names {tag}, which does not exist in {directory}")
            return directory, tag
    raise CheckpointError(f"no checkpoint in {path}: expected a run folder with checkpoints/latest, "
                          "a checkpoints folder with latest, or a step_XXXXXXXX folder")


def read_meta(directory: Path, tag: str) -> dict[str, Any]:
    """meta.json of a complete checkpoint; checks the manifest (every file present at its size)."""
    folder = directory / tag
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {folder} is incomplete (no manifest.json: killed while saving?)")
    try:
        manifest = json.loads(manifest_path.read_text())
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {folder}: cannot read its manifest or meta.json: {e}") from None
    for rel, size in manifest["files"].items():
        f = folder / rel
        if not f.is_file():
            raise CheckpointError(f"checkpoint {folder} is missing {rel}")
        if f.stat().st_size != size:
            raise CheckpointError(f"checkpoint file {f} has {f.stat().st_size} bytes, expected {size} (truncated?)")
    return meta


# ----------------------------------------------------------------------------- writing
def write_rank_files(folder: Path, rank: int, rng: dict[str, Any], ema_state: dict[str, torch.Tensor] | None,
                     meta: dict[str, Any] | None) -> None:
    """This rank's RNG file; rank 0 also writes the EMA weights and meta.json."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(rng, folder / f"rng_rank{rank}.pt")
    if rank == 0:
        if ema_state is not None:
            save_file(ema_state, str(folder / "ema.safetensors"))
        (folder / "meta.json").write_text(json.dumps(meta, indent=2))


def write_manifest_and_latest(directory: Path, tag: str) -> None:
    """Rank 0, after every rank finished writing: manifest.json, then `latest` (atomic rename)."""
    folder = directory / tag
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    (folder / "manifest.json").write_text(json.dumps({"files": files}, indent=2))
    tmp = directory / "latest.tmp"
    tmp.write_text(tag)
    os.replace(tmp, directory / "latest")


def prune(directory: Path, keep: int, protect: str) -> None:
    """Delete all but the `keep` newest complete checkpoints (never `protect`); keep=0 keeps all."""
    if keep <= 0:
        return
    tags = sorted(p.name for p in directory.iterdir() if p.is_dir() and p.name.startswith(TAG_PREFIX)
                  and (p / "manifest.json").is_file() and not p.name.endswith("_universal"))
    for tag in tags[:-keep]:
        if tag != protect:
            shutil.rmtree(directory / tag, ignore_errors=True)
            shutil.rmtree(directory / f"{tag}_universal", ignore_errors=True)


def remove_newer(directory: Path, tag: str) -> None:
    """Remove checkpoint folders newer than `tag` (leftovers of a killed run) before writing new ones."""
    for p in directory.iterdir():
        if p.is_dir() and p.name.startswith(TAG_PREFIX) and p.name.split("_universal")[0] > tag:
            shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------- reading
def read_rank_rng(folder: Path, rank: int) -> dict[str, Any] | None:
    path = folder / f"rng_rank{rank}.pt"
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # a truncated file raises several types
        raise CheckpointError(f"cannot read {path} (truncated or corrupt?): {e}") from None


def read_ema(folder: Path) -> dict[str, torch.Tensor] | None:
    path = folder / "ema.safetensors"
    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {path} (truncated or corrupt?): {e}") from None


def weights_checksum(tensors: list[torch.Tensor]) -> list[float]:
    """(sum, sum of |x|, sum of x * position) over full parameters, in float64: detects unloaded or shuffled weights."""
    total, absolute, weighted = 0.0, 0.0, 0.0
    for t in tensors:
        x = t.detach().double().reshape(-1).cpu()
        total += float(x.sum())
        absolute += float(x.abs().sum())
        weighted += float((x * torch.linspace(0.5, 1.5, x.numel(), dtype=torch.float64)).sum())
    return [total, absolute, weighted]


def checksums_match(a: list[float], b: list[float], rtol: float = 1e-6) -> bool:
    return all(abs(x - y) <= rtol * max(1.0, abs(x), abs(y)) for x, y in zip(a, b))
