"""Everything that touches DeepSpeed: process group, engine, ZeRO-3 gathering, checkpoints.

This is the only module that imports `deepspeed` (imported lazily, so the rest of
`worldsim.train` imports without it). On CPU DeepSpeed uses gloo; one process needs no launcher
(`ensure_dist_env` fills in RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT when absent);
`torchrun --nproc_per_node N` or `deepspeed --num_gpus N` start several.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from worldsim.hardware import MissingDependencyError
from worldsim.train.config import TrainConfig
from worldsim.train.ds_config import deepspeed_config


class CheckpointError(Exception):
    """A checkpoint that is missing, truncated, from another model, or did not load."""


def _deepspeed() -> Any:
    try:
        import deepspeed
    except ImportError as e:  # pragma: no cover - depends on the install
        raise MissingDependencyError(
            "training needs DeepSpeed: pip install 'worldsim[deepspeed]' (or pip install deepspeed)"
        ) from e
    return deepspeed


def ensure_dist_env(port: int = 29500) -> None:
    """Set the rendezvous variables of a single process when no launcher did (else DeepSpeed tries MPI)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        os.environ.setdefault("LOCAL_RANK", os.environ["RANK"])
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(port))
        return
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(port))


def init_distributed(port: int = 29500) -> tuple[int, int]:
    """Start (once) the process group; returns (rank, world_size)."""
    ensure_dist_env(port)
    if not dist.is_initialized():
        # Collectives may wait long: rank 0 alone encodes the latent cache of a large store on a CPU.
        _deepspeed().init_distributed(verbose=False, timeout=datetime.timedelta(hours=3))
    return dist.get_rank(), dist.get_world_size()


def device() -> torch.device:
    """The accelerator this rank trains on (cpu here; cuda:LOCAL_RANK on GPUs)."""
    from deepspeed.accelerator import get_accelerator

    acc = get_accelerator()
    if acc.device_name() == "cpu":
        return torch.device("cpu")
    return torch.device(acc.device_name(int(os.environ.get("LOCAL_RANK", 0))))


def bf16_supported() -> bool:
    """DeepSpeed's bf16 mode where it pays: GPUs that support it. CPUs use autocast instead (`worldsim.train.precision`)."""
    from deepspeed.accelerator import get_accelerator

    acc = get_accelerator()
    return acc.device_name() != "cpu" and bool(acc.is_bf16_supported())


def build_engine(model: nn.Module, cfg: TrainConfig, load_universal: bool = False) -> Any:
    """`deepspeed.initialize` with the config generated from `cfg`; returns the engine."""
    ds = _deepspeed()
    params = [p for p in model.parameters() if p.requires_grad]
    config = deepspeed_config(cfg, bf16_supported(), load_universal)
    if device().type == "cpu":
        config.pop("bf16", None)  # on CPU bf16 means autocast around the forward (worldsim.train.precision)
    engine, _, _, _ = ds.initialize(model=model, model_parameters=params, config=config)
    return engine


def is_zero3(engine: Any) -> bool:
    return engine.zero_optimization_stage() == 3


@contextlib.contextmanager
def gathered(engine: Any, params: list[nn.Parameter]) -> Iterator[None]:
    """Make full `params` visible on every rank inside the block (ZeRO-3 shards them; no-op otherwise)."""
    if is_zero3(engine):
        with _deepspeed().zero.GatheredParameters(params, modifier_rank=None):
            yield
    else:
        yield


def set_lr(engine: Any, lr: float) -> None:
    for group in engine.optimizer.param_groups:
        group["lr"] = lr


def grad_norm(engine: Any) -> float | None:
    """Global gradient norm of the last optimizer step (before clipping), if DeepSpeed computed one."""
    norm = engine.get_global_grad_norm()
    if norm is None:
        return None
    return float(norm.item() if torch.is_tensor(norm) else norm)


def full_grad_norm(engine: Any) -> float | None:
    """Gradient norm from the module's own .grad (stage 0 keeps full, already averaged gradients); None otherwise."""
    if engine.zero_optimization_stage() != 0:
        return None
    grads = [p.grad.detach().double() for p in engine.module.parameters() if p.grad is not None]
    if not grads:
        return None
    return float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))


# Plain-data classes DeepSpeed 0.19 pickles into ZeRO and universal checkpoints (found by scanning the
# checkpoints of every test run: ZeRO 0-3, offload, universal). Unpickling them builds the object, runs nothing.
DEEPSPEED_PICKLED = ("deepspeed.runtime.zero.config.ZeroStageEnum", "deepspeed.runtime.fp16.loss_scaler.LossScaler",
                     "deepspeed.utils.tensor_fragment.fragment_address")


def _deepspeed_safe_globals() -> list[Any]:
    import importlib

    found = []
    for name in DEEPSPEED_PICKLED:
        module, _, attr = name.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):  # another DeepSpeed version: its checkpoints will say what they need
            pass
    return found


def check_pickles(folder: Path) -> None:
    """Refuse a checkpoint whose pickle files hold anything but tensors and plain data.

    DeepSpeed loads its `.pt` files with ``torch.load(weights_only=False)``, which runs whatever code a
    crafted pickle names (a checkpoint is a program). Every file is first read with PyTorch's restricted
    unpickler (``weights_only=True``: tensors, numbers, strings, containers and a short allow-list); a
    file it rejects is never handed to DeepSpeed.
    """
    allowed = _deepspeed_safe_globals()
    for path in sorted(folder.rglob("*.pt")):
        try:
            with torch.serialization.safe_globals(allowed):
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError for a forbidden global; anything else: unreadable
            raise CheckpointError(
                f"refusing to load {path}: it holds objects other than tensors and plain data "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); loading it could run code. "
                "Only resume checkpoints you trust, written by worldsim") from None


def load_checkpoint(engine: Any, directory: Path, tag: str) -> dict[str, Any]:
    """Load module, optimizer and client state of `directory/tag`; CheckpointError if it cannot (or must not)."""
    check_pickles(directory / tag)
    try:
        path, client = engine.load_checkpoint(str(directory), tag=tag, load_optimizer_states=True,
                                              load_lr_scheduler_states=False)
    except (RuntimeError, KeyError, ValueError, OSError, EOFError, AssertionError) as e:
        raise CheckpointError(f"cannot load checkpoint {directory / tag}: {type(e).__name__}: {e}") from None
    except Exception as e:  # unpickling a truncated file raises a zoo of types
        raise CheckpointError(f"cannot load checkpoint {directory / tag} (truncated or corrupt?): "
                              f"{type(e).__name__}: {e}") from None
    if path is None:
        raise CheckpointError(f"DeepSpeed found no checkpoint at {directory / tag}")
    return client or {}


def convert_to_universal(directory: Path, tag: str) -> str:
    """Convert `directory/tag` to a universal checkpoint `directory/<tag>_universal` (rank 0 only); returns its tag."""
    out_tag = f"{tag}_universal"
    out = directory / out_tag
    if (out / "zero").is_dir():
        check_pickles(out)
        return out_tag
    check_pickles(directory / tag)  # the conversion unpickles too
    cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder", str(directory / tag),
           "--output_folder", str(out), "--num_extract_workers", "1", "--num_merge_workers", "1",
           "--inject_missing_state"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise CheckpointError(f"converting {directory / tag} to a universal checkpoint failed:\n{tail}")
    return out_tag


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True if `flag` is true on any rank (all ranks must call it)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (small JSON-like objects only)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average scalar logs over ranks (all ranks must call it with the same keys)."""
    if not dist.is_initialized() or dist.get_world_size() == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def max_over_ranks(value: float) -> float:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: accelerator allocations on GPU, resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
