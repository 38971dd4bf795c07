"""The trainer in this process (one rank, real DeepSpeed engine): errors, non-finite losses, Ctrl-C, TensorBoard."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from helpers import free_port, make_store

from worldsim.cli import compose, main
from worldsim.train.checkpoint import resolve
from worldsim.train.trainer import NonFiniteLossError, Trainer

BASE = ["model=tiny", "window=5", "batch_size=2", "log_every=1", "progress=false", "optim.warmup_steps=1",
        "latent_stats_batches=1", f"dist.port={free_port()}"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("data") / "square.zarr", episodes=3, steps=12)


@pytest.fixture(scope="module")
def vae_run(store, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "vae"
    cfg = compose("train_vae", [f"data={store}", f"run_dir={run_dir}", "steps=4", "checkpoint_every=2",
                                "video_every=2", *BASE])
    result = Trainer(cfg).fit()
    assert result.step == 4 and result.export_dir is not None
    return run_dir


def _error(capsys, *args) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    return err


def test_resume_errors_name_the_problem_and_write_nothing(vae_run, store, capsys, tmp_path):
    before = sorted(p.name for p in (vae_run / "checkpoints").iterdir())
    common = [f"data={store}", "steps=6", *BASE]
    err = _error(capsys, "train-vae", f"resume={tmp_path / 'nope'}", *common)
    assert "does not exist" in err
    err = _error(capsys, "train-vae", f"resume={vae_run}", "optim.lr=0.1", *common)
    assert "optim.lr" in err and "different configuration" in err
    err = _error(capsys, "train-vae", f"resume={vae_run}", "+model_overrides.base_channels=16", *common)
    assert "another model" in err
    err = _error(capsys, "train", f"resume={vae_run}", f"vae={vae_run / 'export'}", *common)
    assert "another model" in err
    assert sorted(p.name for p in (vae_run / "checkpoints").iterdir()) == before

    # A truncated file of the latest checkpoint is found before anything loads.
    directory, tag = resolve(vae_run)
    victim = directory / tag / "mp_rank_00_model_states.pt"
    data = victim.read_bytes()
    victim.write_bytes(data[:100])
    try:
        err = _error(capsys, "train-vae", f"resume={vae_run}", *common)
        assert "truncated" in err and "mp_rank_00_model_states.pt" in err
    finally:
        victim.write_bytes(data)


def test_an_unknown_model_field_or_a_window_that_does_not_fit_is_named(vae_run, store, capsys, tmp_path):
    common = [f"data={store}", "steps=1", *(a for a in BASE if not a.startswith("window="))]
    err = _error(capsys, "train-vae", "+model_overrides.bogus=3", "window=5", f"run_dir={tmp_path / 'a'}", *common)
    assert "model_overrides: the autoencoder config has no field 'bogus'; its fields are " in err
    assert "temporal_factor" in err  # the known fields are listed
    err = _error(capsys, "train-vae", "window=2", f"run_dir={tmp_path / 'b'}", *common)
    assert err.startswith("worldsim train-vae: error: window=2: ") and "1 + m*k" in err, err
    err = _error(capsys, "train", f"vae={vae_run / 'export'}", "+model_overrides.bogus=3", "window=5",
                 f"run_dir={tmp_path / 'c'}", *common)
    assert "model_overrides: the DiT config has no field 'bogus'; its fields are " in err and "depth" in err
    assert not any((tmp_path / run / "checkpoints").exists() for run in "abc")


def test_tensorboard_has_scalars_and_a_reconstruction_video(vae_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(vae_run / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("loss/loss", "loss/mse", "loss/kl", "train/lr", "train/grad_norm", "perf/samples_per_s",
                "perf/tokens_per_s", "perf/peak_memory_mb"):
        assert tag in tags, tag
    assert [e.step for e in acc.Scalars("loss/loss")] == [1, 2, 3, 4]
    assert "video/reconstruction" in acc.Tags()["images"]
    assert (vae_run / "videos" / "video_reconstruction_00000002.mp4").stat().st_size > 0


def _trainer(store, run_dir, *extra):
    return Trainer(compose("train_vae", [f"data={store}", f"run_dir={run_dir}", "video_every=0", "tensorboard=false",
                                         "export=false", *BASE, *extra]))


def test_non_finite_losses_are_skipped_then_abort(store, tmp_path):
    trainer = _trainer(store, tmp_path / "a", "steps=3", "checkpoint_every=100", "max_nonfinite=3")
    real_loss, calls = trainer.task.loss, []

    def flaky(module, batch, generator):  # fault injection: calls 2 and 3 return NaN
        loss, logs = real_loss(module, batch, generator)
        calls.append(1)
        return (loss * float("nan"), logs) if len(calls) in (2, 3) else (loss, logs)

    trainer.task.loss = flaky
    before = [p.detach().clone() for _, p in trainer.named_params]
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        result = trainer.fit()
    assert result.step == 3 and len(calls) == 5  # two batches skipped, three steps taken
    assert all(torch.isfinite(p).all() for _, p in trainer.named_params)
    assert any(not torch.equal(a, p) for a, (_, p) in zip(before, trainer.named_params))

    trainer = _trainer(store, tmp_path / "b", "steps=3", "checkpoint_every=100", "max_nonfinite=3")
    real = trainer.task.loss
    trainer.task.loss = lambda m, b, g: (real(m, b, g)[0] * float("inf"), {"loss": float("inf")})
    with pytest.warns(RuntimeWarning), pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row"):
        trainer.fit()


def test_ctrl_c_writes_a_checkpoint_before_exiting(store, tmp_path):
    trainer = _trainer(store, tmp_path / "c", "steps=50", "checkpoint_every=100")
    real_loss, calls = trainer.task.loss, []

    def interrupting(module, batch, generator):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT, as Ctrl-C sends
        return real_loss(module, batch, generator)

    trainer.task.loss = interrupting
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when the suite runs as a background job
    result = trainer.fit()
    assert result.interrupted and result.step == 3
    directory, tag = resolve(tmp_path / "c")
    assert tag == "step_00000003" and (directory / tag / "manifest.json").is_file()
    assert signal.getsignal(signal.SIGINT) is before  # restored, whatever it was


def test_warm_start_from_an_export_adds_a_pathway_and_is_recorded(vae_run, store, tmp_path, capsys):
    from worldsim.export import load_export

    common = [f"data={store}", f"vae={vae_run / 'export'}", "validation.every=0", "video_every=0", "steps=2",
              "ema_decay=0", *BASE]
    first = Trainer(compose("train", [f"run_dir={tmp_path / 'a'}", "++model_overrides.previous_frame=false", *common])).fit()
    # vae= also takes a DiT export (it carries its autoencoder); the new run adds the previous-frame pathway
    cfg = compose("train", [f"run_dir={tmp_path / 'b'}", f"init_from={first.export_dir}",
                            "+model_overrides.previous_frame=true", *common])
    cfg.vae = str(first.export_dir)
    trainer = Trainer(cfg)
    old = load_export(first.export_dir)[0]["dit"].state_dict()
    new = trainer.task.model.state_dict()
    assert all(torch.equal(new[n], old[n]) for n in old)  # every trained tensor carried over
    assert trainer.warm_start["new_parameters"] and all(n.startswith("previous_") for n in trainer.warm_start["new_parameters"])
    result = trainer.fit()
    meta = load_export(result.export_dir)[1]
    assert meta["train"]["init_from"]["from"] == str(first.export_dir)
    # a model the export does not fit: one line naming the mismatch, no run folder written
    err_args = ["train", f"run_dir={tmp_path / 'c'}", f"init_from={first.export_dir}", "+model_overrides.dim=128", *common]
    err = _error(capsys, *err_args)
    assert "does not fit" in err and "differ in shape" in err
    assert not (tmp_path / "c" / "checkpoints").exists()


def test_a_dit_warm_starts_on_another_latent_space_only_when_asked(vae_run, store, tmp_path, capsys):
    from worldsim.export import load_export

    common = [f"data={store}", "validation.every=0", "video_every=0", "steps=1", "ema_decay=0", *BASE]
    dit = Trainer(compose("train", [f"vae={vae_run / 'export'}", f"run_dir={tmp_path / 'dit'}", *common])).fit()
    # the whole autoencoder fine-tuned (encoder included): a related but different latent space
    ae = Trainer(compose("train_vae", [f"run_dir={tmp_path / 'ae'}", f"init_from={vae_run / 'export'}",
                                       "optim.lr=0.01", *common])).fit()
    args = [f"vae={ae.export_dir}", f"init_from={dit.export_dir}", *common]
    err = _error(capsys, "train", f"run_dir={tmp_path / 'refused'}", *args)
    assert "another autoencoder" in err and "init_other_latents=true" in err
    result = Trainer(compose("train", [f"run_dir={tmp_path / 'asked'}", "init_other_latents=true", *args])).fit()
    record = load_export(result.export_dir)[1]["train"]["init_from"]
    assert record["from"] == str(dit.export_dir) and record["other_latents"] is True


def test_decoder_fine_tune_keeps_the_encoder_and_the_latent_key(vae_run, store, tmp_path):
    from worldsim.export import load_export
    from worldsim.train.latent_cache import autoencoder_key

    cfg = compose("train_vae", [f"data={store}", f"run_dir={tmp_path / 'ft'}", f"init_from={vae_run / 'export'}",
                                "freeze_encoder=true", "steps=3", "validation.every=0", "video_every=0",
                                "optim.lr=0.01", *BASE])
    result = Trainer(cfg).fit()
    before, after = load_export(vae_run / "export")[0]["autoencoder"], load_export(result.export_dir)[0]["autoencoder"]
    old, new = before.state_dict(), after.state_dict()
    assert all(torch.equal(old[n], new[n]) for n in old if not n.startswith("decoder."))  # encoder and stats kept
    assert any(not torch.equal(old[n], new[n]) for n in old if n.startswith("decoder."))  # the decoder trained
    assert autoencoder_key(after) == autoencoder_key(before)
    with pytest.raises(ValueError, match="needs task=vae"):
        compose("train_vae", [f"data={store}", "freeze_encoder=true", *BASE])


def test_a_palette_decoder_fine_tune_is_swapped_in_under_a_trained_dit(vae_run, store, tmp_path, capsys):
    from worldsim.export import load_export
    from worldsim.train.warm_start import swap_decoder

    flat = make_store(tmp_path / "flat.zarr", episodes=2, steps=12, noise=0)  # black and the square's red
    common = ["validation.every=0", "video_every=0", "steps=2", "ema_decay=0", *BASE]
    ft = Trainer(compose("train_vae", [f"data={flat}", f"run_dir={tmp_path / 'ft'}", f"init_from={vae_run / 'export'}",
                                       "freeze_encoder=true", "+model_overrides.palette=auto", *common])).fit()
    assert load_export(ft.export_dir)[1]["autoencoder_config"]["palette"] == [[0, 0, 0], [230, 60, 40]]
    dit = Trainer(compose("train", [f"data={store}", f"vae={vae_run / 'export'}", f"run_dir={tmp_path / 'dit'}",
                                    *common])).fit()
    out = swap_decoder(dit.export_dir, ft.export_dir, tmp_path / "swapped")
    models, meta = load_export(out)
    assert models["autoencoder"].decoder.palette is not None
    old = load_export(dit.export_dir)[0]["dit"].state_dict()
    assert all(torch.equal(old[n], t) for n, t in models["dit"].state_dict().items())
    assert meta["decoder_from"]["from"] == str(ft.export_dir) and meta["train"]["run_dir"] == str(tmp_path / "dit")
    # an autoencoder whose encoder trained too encodes other latents: refused
    whole = Trainer(compose("train_vae", [f"data={store}", f"run_dir={tmp_path / 'whole'}",
                                          f"init_from={vae_run / 'export'}", "optim.lr=0.01", *common])).fit()
    with pytest.raises(ValueError, match="encodes other latents"):
        swap_decoder(dit.export_dir, whole.export_dir, tmp_path / "refused")
    # a textured world has no palette: one line naming the store, no run written
    err = _error(capsys, "train-vae", f"data={store}", f"run_dir={tmp_path / 'noisy'}", "+model_overrides.palette=auto",
                 *common)
    assert "palette=auto" in err and "not drawn from a small palette" in err
    assert not (tmp_path / "noisy" / "checkpoints").exists()


def test_resume_refuses_a_checkpoint_that_would_run_code(vae_run, store, tmp_path, capsys):
    """A crafted pickle (its manifest updated to match) is refused before DeepSpeed unpickles it: nothing runs."""
    import json
    import pickle
    import shutil

    run = tmp_path / "crafted"
    shutil.copytree(vae_run, run)
    directory, tag = resolve(run)
    victim = directory / tag / "mp_rank_00_model_states.pt"
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    victim.write_bytes(pickle.dumps({"module": Payload()}))
    manifest = directory / tag / "manifest.json"
    data = json.loads(manifest.read_text())
    data["files"]["mp_rank_00_model_states.pt"] = victim.stat().st_size
    manifest.write_text(json.dumps(data))
    err = _error(capsys, "train-vae", f"data={store}", f"resume={run}", "steps=6", *BASE)
    assert "refusing to load" in err and "could run code" in err
    assert not marker.exists()


def test_training_without_deepspeed_is_one_line(tmp_path):
    """A user without the deepspeed extra gets the install hint, not a traceback (deepspeed made unimportable)."""
    import subprocess
    import sys

    store = make_store(tmp_path / "s.zarr", episodes=2, steps=8)
    blocker = tmp_path / "block" / "deepspeed"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named deepspeed')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker.parent), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "worldsim.cli", "train-vae", f"data={store}", "model=tiny", "window=5",
                          "steps=1", f"run_dir={tmp_path / 'run'}", "progress=false"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.count("\n") == 1 and "pip install 'worldsim[deepspeed]'" in out.stderr and "Traceback" not in out.stderr


def test_state_change_targets_line_up_and_a_dit_head_trains_on_them(vae_run, tmp_path, capsys):
    """`objective.state_change_key`: per latent frame, whether the recorded state changed (a push into a wall
    leaves the square where it was); the DiT gets a head for it, trained beside the diffusion loss."""
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from worldsim.data.store import EpisodeStore
    from worldsim.export import load_export
    from worldsim.train.latent_cache import LatentWindowDataset, build_cache

    store = make_store(tmp_path / "state.zarr", episodes=3, steps=12, state=True)
    common = [f"data={store}", f"vae={vae_run / 'export'}", "validation.every=0", "video_every=0", "steps=3", *BASE]
    result = Trainer(compose("train", [f"run_dir={tmp_path / 'a'}", "objective.state_change_key=square_x", *common])).fit()
    models = load_export(result.export_dir)[0]
    assert models["dit"].config.state_change_head
    acc = EventAccumulator(str(tmp_path / "a" / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/state_change")] == [1, 2, 3]
    # the same target trains a motion gate (does this push move the square?) in place of the head
    gate = ["+model_overrides.previous_frame=true", "+model_overrides.motion_radius=1", "+model_overrides.motion_gate=4",
            "+model_overrides.state_change_head=false", "objective.motion_weight=1.0"]
    result = Trainer(compose("train", [f"run_dir={tmp_path / 'g'}", "objective.state_change_key=square_x", *gate,
                                       *common])).fit()
    gated = load_export(result.export_dir)[0]["dit"]
    assert gated.config.motion_gate == 4 and gated.state_change_head is None
    acc = EventAccumulator(str(tmp_path / "g" / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/motion_gate")] == [1, 2, 3]
    assert "loss/state_change" not in acc.Tags()["scalars"]

    data = LatentWindowDataset(build_cache(store, models["autoencoder"], progress=False), store, frames=3,
                               state_change="square_x")
    s = EpisodeStore.open(store, "r")
    x = s.read("state/square_x", 0, s.num_frames)[:, 0]
    for i in range(len(data)):
        first, stop = data.rows(i)
        ends = x[first:stop:2]  # the last row of each latent frame of the window
        change = data[i]["state_change"].numpy()
        moved = (ends[1:] != ends[:-1]).astype(np.float32)
        if first in (0, *s.episode_ends[:-1]):  # an episode's first latent frame has no previous one
            assert np.isnan(change[0]) and np.array_equal(change[1:], moved)
        else:
            assert np.array_equal(change[1:], moved)
    s.close()
    assert {0.0, 1.0} <= set(data.state_change[~data.state_change.isnan()].tolist())  # some pushes fail
    err = _error(capsys, "train", f"run_dir={tmp_path / 'b'}", "objective.state_change_key=nope", *common)
    assert "nope" in err and "square_x" in err
    err = _error(capsys, "train", f"run_dir={tmp_path / 'c'}", "objective.state_change_key=square_x",
                 "latent_cache=false", *common)
    assert "latent_cache" in err


def test_a_motion_gate_fitted_alone_learns_when_a_push_moves_the_square(vae_run, tmp_path):
    """scripts/fit_motion_gate.py: a DiT with a motion kernel gets a gate fitted on the cached latents (the rest of
    its weights untouched); pushes (left, right) are found to be the actions that can move the square."""
    import json

    from safetensors.torch import load_file

    from worldsim.export import load_export
    from worldsim.train.motion_gate import fit_motion_gate

    store = make_store(tmp_path / "state.zarr", episodes=40, steps=24, state=True)
    common = [f"data={store}", f"vae={vae_run / 'export'}", "validation.every=0", "video_every=0", "steps=2", *BASE]
    plain = Trainer(compose("train", [f"run_dir={tmp_path / 'a'}", "objective.state_change_key=square_x",
                                      "+model_overrides.previous_frame=true", "+model_overrides.motion_radius=1",
                                      *common])).fit().export_dir
    result = fit_motion_gate(plain, store, tmp_path / "gated", key="square_x", width=8, steps=300, lr=3e-3, batch=64,
                             eval_every=100, log=lambda line: None)
    assert result["acting_actions"] == [0, 2]  # left and right; "stay" never moves it
    curve = result["curve"]
    assert [row["step"] for row in curve] == [0, 100, 200, 300]
    assert curve[-1]["held_out_bce"] < 0.3 * curve[0]["held_out_bce"]  # from p = 0.998 everywhere
    models, meta = load_export(tmp_path / "gated")
    assert models["dit"].config.motion_gate == 8 and meta["motion_gate_fit"]["curve"] == json.loads(json.dumps(curve))
    before, after = load_file(plain / "dit.safetensors"), load_file(tmp_path / "gated" / "dit.safetensors")
    assert set(after) - set(before) and all(name.startswith("motion.gate_") for name in set(after) - set(before))
    assert all(torch.equal(before[name], after[name]) for name in before)
    # --kernel: the action's kernel is fitted too, through the gate (the moved previous latent against the next)
    result = fit_motion_gate(tmp_path / "gated", store, tmp_path / "kernel", key="square_x", steps=20, lr=1e-2,
                             batch=64, eval_every=100, log=lambda line: None, kernel=True)
    assert all("held_out_motion_mse" in row for row in result["curve"])
    fitted = load_file(tmp_path / "kernel" / "dit.safetensors")
    assert not torch.equal(fitted["motion.head.weight"], after["motion.head.weight"])
    assert all(torch.equal(after[name], fitted[name]) for name in after if not name.startswith("motion."))
    kernel_free = Trainer(compose("train", [f"run_dir={tmp_path / 'b'}", *common])).fit().export_dir
    with pytest.raises(ValueError, match="no motion kernel"):
        fit_motion_gate(kernel_free, store, tmp_path / "x")


def test_step_distillation_brings_the_one_step_sample_to_the_guided_teacher(vae_run, tmp_path):
    """scripts/distill_steps.py: the student's one-step sample moves toward the teacher's 4-step guided sample of the
    same noise on held-out windows, and the student is a complete DiT export that records where it came from."""
    import json
    import subprocess
    import sys

    from worldsim.export import load_export

    store = make_store(tmp_path / "d.zarr", episodes=8, steps=24)
    common = [f"data={store}", f"vae={vae_run / 'export'}", "validation.every=0", "video_every=0", "steps=2", *BASE]
    teacher = Trainer(compose("train", [f"run_dir={tmp_path / 't'}", *common])).fit().export_dir
    run = subprocess.run([sys.executable, "scripts/distill_steps.py", str(teacher), str(store), str(tmp_path / "s"),
                          "--steps", "40", "--lr", "3e-3", "--window", "3", "--eval-every", "40", "--batch", "4"],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    curve = json.loads((tmp_path / "s" / "distill.json").read_text())["curve"]
    assert [row["step"] for row in curve] == [0, 40]
    assert curve[-1]["held_out_mse_to_teacher"] < 0.7 * curve[0]["held_out_mse_to_teacher"], curve
    models, meta = load_export(tmp_path / "s")
    assert meta["distilled"]["teacher_steps"] == 4 and meta["distilled"]["guidance"] == 3.0
    # continued from the student (--init): it starts where the first run ended, the teacher unchanged
    run = subprocess.run([sys.executable, "scripts/distill_steps.py", str(teacher), str(store), str(tmp_path / "s2"),
                          "--init", str(tmp_path / "s"), "--steps", "1", "--window", "3", "--batch", "4"],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    again = json.loads((tmp_path / "s2" / "distill.json").read_text())["curve"]
    assert abs(again[0]["held_out_mse_to_teacher"] - curve[-1]["held_out_mse_to_teacher"]) < 1e-6


def test_a_motion_field_fitted_alone_then_trained_with_the_dit(vae_run, tmp_path):
    """scripts/fit_motion_field.py: a two-frame DiT gets a motion field fitted on the cached latents (the rest of its
    weights untouched), whose moved previous latent comes closer to the next one; `worldsim train` then continues
    it with the field's own loss (objective.field_weight, logged as loss/field)."""
    import subprocess
    import sys

    from safetensors.torch import load_file
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from worldsim.export import load_export

    store = make_store(tmp_path / "d.zarr", episodes=16, steps=24)
    common = [f"data={store}", f"vae={vae_run / 'export'}", "validation.every=0", "video_every=0", "steps=2", *BASE]
    two = ["+model_overrides.previous_frame=true", "+model_overrides.previous_frames=2"]
    plain = Trainer(compose("train", [f"run_dir={tmp_path / 'a'}", *two, *common])).fit().export_dir
    run = subprocess.run([sys.executable, "scripts/fit_motion_field.py", str(plain), str(store), str(tmp_path / "f"),
                          "--width", "8", "--radius", "2", "--steps", "150", "--batch", "32", "--lr", "1e-2",
                          "--json", str(tmp_path / "f.json")],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    import json

    curve = json.loads((tmp_path / "f.json").read_text())["curve"]
    assert [row["step"] for row in curve] == [0, 150]
    assert curve[-1]["held_out_field_mse"] < 0.7 * curve[0]["held_out_field_mse"], curve
    models, meta = load_export(tmp_path / "f")
    assert models["dit"].config.motion_field == 8 and meta["motion_field_fit"]["radius"] == 2
    before, after = load_file(plain / "dit.safetensors"), load_file(tmp_path / "f" / "dit.safetensors")
    assert set(after) - set(before) and all(name.startswith("field") for name in set(after) - set(before))
    assert all(torch.equal(before[name], after[name]) for name in before)
    field = ["+model_overrides.motion_field=8", "+model_overrides.motion_field_radius=2", "objective.field_weight=1.0"]
    Trainer(compose("train", [f"run_dir={tmp_path / 'b'}", f"init_from={tmp_path / 'f'}", *two, *field,
                              *common])).fit()
    acc = EventAccumulator(str(tmp_path / "b" / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/field")] == [1, 2]
    # --prior: a conv prior (the next latent guessed by a conv net) instead, fitted and trained the same way
    run = subprocess.run([sys.executable, "scripts/fit_motion_field.py", str(plain), str(store), str(tmp_path / "p"),
                          "--prior", "--width", "8", "--steps", "100", "--batch", "32", "--lr", "3e-3", "--unroll", "2",
                          "--schedule", "cosine", "--eval-every", "50", "--json", str(tmp_path / "p.json")],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    curve = json.loads((tmp_path / "p.json").read_text())["curve"]
    assert curve[0]["held_out_prior_mse"] == curve[0]["held_out_copy_mse"]  # it starts as copying
    assert curve[-1]["held_out_prior_mse"] < curve[0]["held_out_prior_mse"], curve
    # --unroll 2: fitted over 2-step rollouts of its own guesses, which are scored too
    assert curve[-1]["held_out_prior_rollout_mse"] < curve[0]["held_out_prior_rollout_mse"], curve
    # the training windows' error is logged beside the held-out one, and the export is written at every evaluation
    assert [row["step"] for row in curve] == [0, 50, 100] and all("train_prior_mse" in row for row in curve[1:])
    models, meta = load_export(tmp_path / "p")
    assert models["dit"].config.conv_prior == 8 and meta["conv_prior_fit"]["schedule"] == "cosine"
    assert meta["conv_prior_fit"]["steps"] == 100 and meta["conv_prior_fit"]["steps_before"] == 0
    # a stopped fit continues from its export: it starts where the first one ended
    run = subprocess.run([sys.executable, "scripts/fit_motion_field.py", str(tmp_path / "p"), str(store),
                          str(tmp_path / "p2"), "--prior", "--steps", "1", "--unroll", "2",
                          "--json", str(tmp_path / "p2.json")],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    again = json.loads((tmp_path / "p2.json").read_text())["curve"]
    assert abs(again[0]["held_out_prior_rollout_mse"] - curve[-1]["held_out_prior_rollout_mse"]) < 1e-5
    assert load_export(tmp_path / "p2")[1]["conv_prior_fit"]["steps_before"] == 0  # another folder: a new fit
    run = subprocess.run([sys.executable, "scripts/fit_motion_field.py", str(tmp_path / "p"), str(store),
                          str(tmp_path / "p"), "--prior", "--steps", "1"],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    assert load_export(tmp_path / "p")[1]["conv_prior_fit"]["steps_before"] == 100  # its own folder: continued
    Trainer(compose("train", [f"run_dir={tmp_path / 'q'}", f"init_from={tmp_path / 'p'}", *two,
                              "+model_overrides.conv_prior=8", "objective.prior_weight=1.0", *common])).fit()
    acc = EventAccumulator(str(tmp_path / "q" / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/prior")] == [1, 2]
    # a DiT fed only the previous frame gains the frame before it too (zero at first); one without either cannot
    one = Trainer(compose("train", [f"run_dir={tmp_path / 'c'}", "+model_overrides.previous_frame=true",
                                    *common])).fit().export_dir
    run = subprocess.run([sys.executable, "scripts/fit_motion_field.py", str(one), str(store), str(tmp_path / "x"),
                          "--prior", "--width", "8", "--steps", "2"],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    assert load_export(tmp_path / "x")[0]["dit"].config.previous_frames == 2
    none = Trainer(compose("train", [f"run_dir={tmp_path / 'd'}", "++model_overrides.previous_frame=false",
                                     *common])).fit().export_dir
    run = subprocess.run([sys.executable, "scripts/fit_motion_field.py", str(none), str(store), str(tmp_path / "y")],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=240)
    assert run.returncode != 0 and "previous_frame=True" in run.stderr


def test_the_conv_next_latent_diagnostic_learns_and_scores_the_dit_on_the_same_frames(vae_run, tmp_path):
    """scripts/conv_next_latent.py: a plain conv net regressing the next latent learns (held-out error falls from
    copying's) and is reported beside the DiT's one-step estimate of the same held-out frames."""
    import json
    import subprocess
    import sys

    store = make_store(tmp_path / "d.zarr", episodes=40, steps=24)
    common = [f"data={store}", f"vae={vae_run / 'export'}", "validation.every=0", "video_every=0", "steps=2", *BASE]
    dit = Trainer(compose("train", [f"run_dir={tmp_path / 'a'}", *common])).fit().export_dir
    run = subprocess.run([sys.executable, "scripts/conv_next_latent.py", str(dit), str(store), "--steps", "60",
                          "--eval-every", "60", "--width", "16", "--batch", "16", "--out", str(tmp_path / "c.json")],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "c.json").read_text())
    curve = result["curve"]
    assert [row["step"] for row in curve] == [0, 60]
    assert abs(curve[0]["held_out_mse"] - result["copy_mse"]) < 1e-6  # it starts as copying the newest latent
    assert curve[-1]["held_out_mse"] < curve[0]["held_out_mse"]
    assert 0 < result["dit_one_step_mse"] < 100 and result["params"] > 0
