"""A run SIGKILLed after a checkpoint and resumed ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess

import pytest
import torch
from helpers import REPO, make_store, run, run_env, worldsim_cmd
from safetensors.torch import load_file

from worldsim.train.checkpoint import resolve

COMMON = ["model=tiny", "window=5", "batch_size=3", "steps=10", "checkpoint_every=2", "keep_checkpoints=0",
          "log_every=1", "video_every=0", "progress=false", "ema_decay=0.9", "optim.warmup_steps=3",
          "latent_stats_batches=2"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("data") / "square.zarr", episodes=4, steps=12)


def test_sigkilled_run_resumes_to_the_same_weights(store, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    run(worldsim_cmd("train-vae", f"data={store}", f"run_dir={full}", *COMMON))

    cmd = worldsim_cmd("train-vae", f"data={store}", f"run_dir={killed}", *COMMON)
    with open(tmp_path / "killed.stderr", "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=run_env(), cwd=REPO)
        for line in proc.stdout:
            if "saved checkpoint" in line and "(step 4)" in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "export").exists()
    _, tag = resolve(killed)
    assert tag >= "step_00000004" and tag < "step_00000010"

    out = run(worldsim_cmd("train-vae", f"data={store}", f"resume={killed}", *COMMON))
    assert "resumed from" in out.stdout

    a = load_file(str(full / "export" / "autoencoder.safetensors"))
    b = load_file(str(killed / "export" / "autoencoder.safetensors"))
    assert a.keys() == b.keys()
    for key in a:  # CPU kernels are deterministic at a fixed thread count: bit for bit
        assert torch.equal(a[key], b[key]), key
    assert float(a["latent_scale"].sum()) > 0
    # The raw (non-EMA) weights of the last checkpoints agree too.
    ma = torch.load(full / "checkpoints" / "step_00000010" / "mp_rank_00_model_states.pt", weights_only=True)["module"]
    mb = torch.load(killed / "checkpoints" / "step_00000010" / "mp_rank_00_model_states.pt", weights_only=True)["module"]
    for key in ma:
        assert torch.equal(ma[key], mb[key]), key
