"""The DeepSpeed config generated from the typed config."""

from __future__ import annotations

import pytest

from worldsim.train.config import DistConfig, OptimConfig, TrainConfig, incompatible_fields
from worldsim.train.ds_config import deepspeed_config


def _cfg(**dist) -> TrainConfig:
    return TrainConfig(data="x", batch_size=3, grad_accum=4, optim=OptimConfig(lr=1e-3, grad_clip=0.5),
                       dist=DistConfig(**dist))


def test_stage_offload_precision_clipping_accumulation_reach_deepspeed():
    c = deepspeed_config(_cfg(zero_stage=3, offload_optimizer=True, offload_param=True), bf16_supported=True)
    assert c["train_micro_batch_size_per_gpu"] == 3 and c["gradient_accumulation_steps"] == 4
    assert c["gradient_clipping"] == 0.5 and c["optimizer"]["params"]["lr"] == 1e-3
    assert c["optimizer"]["params"]["torch_adam"] is True
    z = c["zero_optimization"]
    assert z["stage"] == 3 and z["offload_optimizer"]["device"] == "cpu" and z["offload_param"]["device"] == "cpu"
    assert c["bf16"] == {"enabled": True}  # auto + supported
    c = deepspeed_config(_cfg(zero_stage=0), bf16_supported=False)
    assert "bf16" not in c and c["zero_optimization"] == {"stage": 0} and "checkpoint" not in c
    assert deepspeed_config(_cfg(precision="fp32"), bf16_supported=True).get("bf16") is None
    assert deepspeed_config(_cfg(zero_stage=2), False, load_universal=True)["checkpoint"] == {"load_universal": True}


def test_bad_dist_settings_are_refused():
    with pytest.raises(ValueError, match="offload_param needs"):
        DistConfig(zero_stage=2, offload_param=True)
    with pytest.raises(ValueError, match="zero_stage"):
        DistConfig(zero_stage=4)
    with pytest.raises(ValueError, match="vae=EXPORT"):
        TrainConfig(data="x", task="dit")


def test_resume_compatibility_lists_changed_fields():
    a, b = _cfg().to_dict(), _cfg(zero_stage=2).to_dict()
    b["steps"], b["optim"]["lr"], b["window"] = 99, 0.5, 17
    assert incompatible_fields(a, b) == ["optim.lr", "window"]


def test_a_field_added_since_the_checkpoint_is_compatible_only_at_its_default():
    from worldsim.train.config import field_defaults

    saved, current = _cfg().to_dict(), _cfg().to_dict()
    del saved["objective"]["motion_weight"]  # a checkpoint written before the field existed
    defaults = field_defaults(TrainConfig)
    assert incompatible_fields(saved, current, defaults) == []
    current["objective"]["motion_weight"] = 1.0
    assert incompatible_fields(saved, current, defaults) == ["objective.motion_weight"]
