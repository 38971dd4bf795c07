"""A run SIGKILLed after a checkpoint and resumed ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import torch
from helpers import REPO, make_store, run, run_env, worldsim_cmd
from safetensors.torch import load_file

from worldsim.models.ae_presets import autoencoder_config
from worldsim.models.autoencoder import VideoAutoencoder
from worldsim.train.checkpoint import resolve
from worldsim.export import write_export

COMMON = ["model=tiny", "window=5", "batch_size=3", "steps=10", "checkpoint_every=2", "keep_checkpoints=0",
          "log_every=1", "video_every=0", "progress=false", "ema_decay=0.9", "optim.warmup_steps=3",
          "latent_stats_batches=2"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("data") / "square.zarr", episodes=4, steps=16)


@pytest.fixture(scope="module")
def vae_export(tmp_path_factory):
    """An untrained tiny autoencoder export: the DiT only needs its latents to be deterministic."""
    torch.manual_seed(0)
    ae = VideoAutoencoder(autoencoder_config("tiny"))
    ae.set_latent_stats(torch.zeros(4), torch.ones(4))
    return write_export(tmp_path_factory.mktemp("vae") / "export", ae, None, (16, 16), None)


@pytest.mark.parametrize("task", ["vae", "dit"])
def test_sigkilled_run_resumes_to_the_same_weights(task, store, vae_export, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    command = "train-vae" if task == "vae" else "train"
    # The DiT run also accumulates gradients and trains on context-scheme subsets (more RNG draws per step).
    extra = [] if task == "vae" else [f"vae={vae_export}", "grad_accum=2", "batch_size=2", "context.schemes=[long-range]",
                                      "context.budget=1", "window=9"]
    args = [f"data={store}", *COMMON, *extra]
    run(worldsim_cmd(command, f"run_dir={full}", *args))

    cmd = worldsim_cmd(command, f"run_dir={killed}", *args)
    with open(tmp_path / "killed.stderr", "w") as err:
        # The child runs at the lowest priority, so on a busy machine this reader still kills it
        # long before its last step (it has eight steps to go after the first checkpoint).
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=run_env(), cwd=REPO,
                                preexec_fn=lambda: os.nice(19))
        for line in proc.stdout:
            if "saved checkpoint" in line and "(step 2)" in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=120)
    log = (tmp_path / "killed.stderr").read_text()[-3000:]
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed ({proc.returncode}):\n{log}"
    assert not (killed / "export").exists()
    _, tag = resolve(killed)
    assert "step_00000002" <= tag < "step_00000010", tag

    out = run(worldsim_cmd(command, f"resume={killed}", *args))
    assert "resumed from" in out.stdout

    weights = "autoencoder.safetensors" if task == "vae" else "dit.safetensors"
    a = load_file(str(full / "export" / weights))
    b = load_file(str(killed / "export" / weights))
    assert a.keys() == b.keys()
    for key in a:  # CPU kernels are deterministic at a fixed thread count: bit for bit
        assert torch.equal(a[key], b[key]), key
    # The raw (non-EMA) weights of the last checkpoints agree too.
    ma = torch.load(full / "checkpoints" / "step_00000010" / "mp_rank_00_model_states.pt", weights_only=True)["module"]
    mb = torch.load(killed / "checkpoints" / "step_00000010" / "mp_rank_00_model_states.pt", weights_only=True)["module"]
    for key in ma:
        assert torch.equal(ma[key], mb[key]), key


def test_a_model_field_added_since_the_checkpoint_counts_as_its_default(tmp_path):
    # A checkpoint written before DiTConfig.motion_context existed resumes while the field keeps its default;
    # asking for another value is another model.
    import dataclasses

    from worldsim.models.dit import DiTConfig
    from worldsim.train.config import TrainConfig, field_defaults
    from worldsim.train.engine import CheckpointError
    from worldsim.train.resume import check_compatible, jsonable

    cfg = TrainConfig(task="dit", data="x", vae="y")
    current = dataclasses.asdict(DiTConfig(latent_channels=4))
    saved = {k: v for k, v in jsonable(current).items() if k != "motion_context"}
    meta = {"task": "dit", "model_config": saved, "config": jsonable(cfg.to_dict()), "zero_stage": 0}
    check_compatible(meta, cfg, current, tmp_path, field_defaults(DiTConfig))  # no error
    changed = dataclasses.asdict(DiTConfig(latent_channels=4, previous_frame=True, motion_radius=1, motion_context=2,
                                           action_space={"type": "Discrete", "n": 2, "start": 0}))
    with pytest.raises(CheckpointError, match="another model"):
        check_compatible(meta, cfg, changed, tmp_path, field_defaults(DiTConfig))
    with pytest.raises(CheckpointError, match="another model"):  # without the defaults, as strict as before
        check_compatible(meta, cfg, current, tmp_path)
