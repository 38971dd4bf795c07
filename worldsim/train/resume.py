"""Deciding whether and how a run can continue from a checkpoint (before anything is loaded or written)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worldsim.train import engine as eng
from worldsim.train.config import TrainConfig, field_defaults, incompatible_fields
from worldsim.train.engine import CheckpointError


def jsonable(value: Any) -> Any:
    """Tuples to lists (what JSON gives back), so saved and current configs compare equal."""
    return json.loads(json.dumps(value, default=str))


def check_compatible(meta: dict[str, Any], cfg: TrainConfig, model_config: dict[str, Any], folder: Path,
                     model_defaults: dict[str, Any] | None = None) -> None:
    """CheckpointError when `folder` holds another model, or a config that must not change on resume.

    `model_defaults` (the model config class's field defaults): a field the checkpoint does not record, added to
    the model since it was written, counts as its default, the behaviour the checkpoint was trained with."""
    model_config = jsonable(model_config)
    saved = meta.get("model_config")
    if isinstance(saved, dict) and model_defaults:
        saved = {**{k: v for k, v in jsonable(model_defaults).items() if k in model_config}, **saved}
    if meta.get("task") != cfg.task or saved != model_config:
        raise CheckpointError(
            f"checkpoint {folder} is from another model (task {meta.get('task')!r}, model config "
            f"{meta.get('model_config')}); this run builds task {cfg.task!r} with {model_config}"
        )
    bad = incompatible_fields(meta["config"], jsonable(cfg.to_dict()), jsonable(field_defaults(type(cfg))))
    if bad:
        raise CheckpointError(f"cannot resume {folder} with a different configuration: {', '.join(bad)} changed "
                              "(only steps, intervals, logging, dist and output settings may change)")
    if meta["zero_stage"] == 0 and cfg.dist.zero_stage != 0:
        raise CheckpointError(f"{folder} was written at ZeRO stage 0; resume it with dist.zero_stage=0 "
                              "(at any number of processes)")


def load_tag(meta: dict[str, Any], where: tuple[Path, str], world: int, zero_stage: int, rank: int) -> str:
    """The tag to load: the checkpoint itself, or its universal conversion when the sharding changed.

    Stage 0 checkpoints hold full states and load at any world size; ZeRO-sharded ones saved at
    another world size or stage are converted (by rank 0) to DeepSpeed's universal format. All
    ranks call this and learn the same outcome, errors included.
    """
    tag = where[1]
    saved = meta["zero_stage"]
    if saved == 0 or (meta["world_size"] == world and saved == zero_stage):
        return tag
    if rank == 0:
        try:
            tag = eng.convert_to_universal(*where)
        except CheckpointError as e:
            tag = f"error: {e}"
    tag = eng.broadcast(tag)  # every rank learns the outcome: none waits forever
    if tag.startswith("error: "):
        raise CheckpointError(tag[len("error: "):])
    return tag
