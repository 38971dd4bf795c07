"""The DeepSpeed config dict, generated from the typed `TrainConfig` (never written by hand).

Only plain data here (no deepspeed import), so the mapping is testable on its own.
"""

from __future__ import annotations

from typing import Any

from worldsim.train.config import TrainConfig


def use_bf16(precision: str, bf16_supported: bool) -> bool:
    """Whether to train in bf16: "bf16" demands it, "auto" takes it where the accelerator supports it."""
    if precision == "bf16":
        return True
    if precision == "fp32":
        return False
    return bf16_supported


def deepspeed_config(
    cfg: TrainConfig, bf16_supported: bool, load_universal: bool = False
) -> dict[str, Any]:
    """DeepSpeed's JSON config for `cfg`.

    The learning-rate schedule is not in here: the trainer sets it itself each step (one formula
    for every ZeRO stage, saved and restored with the step count). `bf16_supported` comes from the
    accelerator (`worldsim.train.engine.bf16_supported`); on CPU the engine never uses DeepSpeed's bf16
    mode: bf16 there means autocast around the DiT's forward, on CPUs that multiply bf16 natively
    (`worldsim.train.precision`).
    `load_universal` loads a universal checkpoint (a run resumed at another number of processes).
    """
    o, d = cfg.optim, cfg.dist
    zero: dict[str, Any] = {"stage": d.zero_stage}
    if d.zero_stage >= 1:
        zero["contiguous_gradients"] = True
        zero["overlap_comm"] = False  # overlap needs streams (GPU); on CPU it only adds buffers
    if d.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if d.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": False}
    if d.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = False  # the export gathers the EMA itself
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": o.grad_clip,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": o.lr,
                "betas": list(o.betas),
                "eps": o.eps,
                "weight_decay": o.weight_decay,
                # torch's AdamW: skips the fused_adam C++ JIT (about 50 s on first use); with
                # offload DeepSpeed uses its CPU Adam regardless.
                "torch_adam": bool(d.torch_adam),
                "adam_w_mode": True,
            },
        },
        "zero_optimization": zero,
        "steps_per_print": 10**9,  # the trainer reports progress itself
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }
    if use_bf16(d.precision, bf16_supported):
        config["bf16"] = {"enabled": True}
    if load_universal:
        config["checkpoint"] = {"load_universal": True}
    return config
