"""The DiT task in this process: latents of an exported autoencoder, context-scheme subsets, rollout video."""

from __future__ import annotations

import torch
from helpers import free_port, make_store

from worldsim.cli import compose
from worldsim.models.ae_presets import autoencoder_config
from worldsim.models.autoencoder import VideoAutoencoder
from worldsim.train.context_sampling import ContextSamplingConfig, select_frames
from worldsim.export import load_export, write_export
from worldsim.train.trainer import Trainer


def tiny_vae(tmp_path):
    """A freshly initialised tiny autoencoder exported to tmp_path / "vae" (identity latent statistics)."""
    torch.manual_seed(0)
    ae = VideoAutoencoder(autoencoder_config("tiny"))
    ae.set_latent_stats(torch.zeros(4), torch.ones(4))
    write_export(tmp_path / "vae", ae, None, (16, 16), None)
    return ae


def spy_on_forward(trainer, record):
    """Make every DiT forward of the trainer's loss call record(batch, frame_index, keyword arguments) first."""
    real = trainer.task.loss

    def loss(module, batch, generator):
        original = trainer.engine.module.forward

        def forward(x, noise_level, actions=None, action_mask=None, frame_index=None, **kw):
            record(batch, frame_index, kw)
            return original(x, noise_level, actions, action_mask, frame_index, **kw)

        trainer.engine.module.forward = forward
        try:
            return real(module, batch, generator)
        finally:
            del trainer.engine.module.forward

    trainer.task.loss = loss


def test_context_subsets_follow_the_schemes():
    cfg = ContextSamplingConfig(schemes=["long-range"], budget=3, targets=1, prob=1.0)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(30):
        idx = select_frames(cfg, 12, g).tolist()
        *context, target = idx
        assert idx == sorted(idx) and len(context) <= 3 and 1 <= target <= 11
        assert context[0] == 0  # long-range always keeps the first frame
        seen.add(len(context))
    assert select_frames(ContextSamplingConfig(), 12, g) is None  # off by default


def test_dit_trains_on_scheme_subsets_and_exports_with_its_autoencoder(tmp_path):
    store = make_store(tmp_path / "square.zarr", episodes=2, steps=16)
    ae = tiny_vae(tmp_path)
    cfg = compose("train", [f"data={store}", f"vae={tmp_path / 'vae'}", f"run_dir={tmp_path / 'run'}", "model=tiny",
                            "window=9", "batch_size=2", "steps=3", "checkpoint_every=3", "video_every=3",
                            "log_every=1", "progress=false", "optim.warmup_steps=1", f"dist.port={free_port()}",
                            "context.schemes=[long-range,hierarchical]", "context.budget=2", "context.prob=1.0"])
    trainer = Trainer(cfg)
    calls = []  # the frame indices the model is trained on
    spy_on_forward(trainer, lambda batch, frame_index, kw: calls.append(
        None if frame_index is None else frame_index[0].tolist()))
    result = trainer.fit()
    assert result.step == 3 and len(calls) == 3
    assert all(c is not None and len(c) <= 3 and c == sorted(c) for c in calls), calls
    assert (tmp_path / "run" / "videos" / "video_rollout_00000003.mp4").is_file()
    models, meta = load_export(tmp_path / "run" / "export")
    assert meta["kind"] == "dit" and meta["dit_config"]["action_substeps"] == 2
    assert meta["world"] == {"env_id": "test/square", "env_kwargs": {}, "rewarded": True}  # what it imitates, without its store
    assert models["dit"].reward_head is not None and models["dit"].termination_head is not None
    assert torch.equal(models["autoencoder"].encoder.conv_in.conv.weight, ae.encoder.conv_in.conv.weight)


def test_resume_keeps_the_holdout_and_refuses_a_changed_autoencoder(tmp_path):
    import pytest

    from worldsim.data.store import EpisodeStore
    from worldsim.train.checkpoint import read_meta, resolve
    from worldsim.train.engine import CheckpointError

    store = make_store(tmp_path / "square.zarr", episodes=6, steps=16)
    ae = tiny_vae(tmp_path)
    args = [f"data={store}", f"vae={tmp_path / 'vae'}", "model=tiny", "window=9", "batch_size=2", "checkpoint_every=2",
            "progress=false", "optim.warmup_steps=1", f"dist.port={free_port()}", "validation.every=2",
            "validation.windows=2", "tensorboard=false", "export=false"]
    Trainer(compose("train", args + [f"run_dir={tmp_path / 'run'}", "steps=2"])).fit()
    meta = read_meta(*resolve(str(tmp_path / "run")))
    assert meta["holdout"] == [2] and "autoencoder_key" in meta  # 6 episodes: one held out, from the middle
    rows = (tmp_path / "run" / "validation.jsonl").read_text().splitlines()
    assert len(rows) == 1 and "next_psnr" in rows[0]

    # The store grows: a resumed run keeps validating on the episodes it started with.
    extra = EpisodeStore.open(store).episode(0)
    with EpisodeStore.open(store, "a") as s:
        s.append_episode(extra["obs"], extra["action"][1:], extra["reward"][1:], extra["terminated"][1:])
    resumed = Trainer(compose("train", args + [f"resume={tmp_path / 'run'}", "steps=3"]))
    assert resumed.holdout == [2] and 6 in resumed.train_episodes

    # A fine-tuned decoder keeps the latents: the DiT continues.
    with torch.no_grad():
        ae.decoder.conv_out.conv.bias.add_(0.1)
    write_export(tmp_path / "vae", ae, None, (16, 16), None)
    Trainer(compose("train", args + [f"resume={tmp_path / 'run'}", "steps=3"]))
    # ... also from another folder: the export then carries the new decoder
    write_export(tmp_path / "vae2", ae, None, (16, 16), None)
    moved = [a for a in args if not a.startswith("vae=")] + [f"vae={tmp_path / 'vae2'}", "export=true"]
    result = Trainer(compose("train", moved + [f"resume={tmp_path / 'run'}", "steps=3"])).fit()
    carried = load_export(result.export_dir)[0]["autoencoder"]
    assert torch.equal(carried.decoder.conv_out.conv.bias, ae.decoder.conv_out.conv.bias)
    # The encoder changes under the same path: the DiT must not continue on its new latents.
    with torch.no_grad():
        ae.encoder.conv_in.conv.bias.add_(0.1)
    write_export(tmp_path / "vae", ae, None, (16, 16), None)
    with pytest.raises(CheckpointError, match="another autoencoder"):
        Trainer(compose("train", args + [f"resume={tmp_path / 'run'}", "steps=4"]))


def test_world_heads_see_the_camera_summed_over_the_whole_window(tmp_path):
    """A DiT with world heads (`worldsim.models.camera`) trained on context-scheme subsets: each picked frame's camera
    is the sum of the moves of every frame before it in the window, the frames the scheme left out included."""
    from worldsim.models.camera import camera_positions

    store = make_store(tmp_path / "square.zarr", episodes=4, steps=24)
    ae = tiny_vae(tmp_path)
    cfg = compose("train", [f"data={store}", f"vae={tmp_path / 'vae'}", f"run_dir={tmp_path / 'run'}", "model=tiny",
                            "window=17", "batch_size=2", "steps=3", "checkpoint_every=3", "video_every=0",
                            "progress=false", "optim.warmup_steps=1", f"dist.port={free_port()}",
                            "context.schemes=[long-range]", "context.budget=3", "context.prob=1.0",
                            "objective.own_context_prob=1.0", "objective.recall_weight=2.0", "+model_overrides.world_heads=1",
                            "+model_overrides.camera_moves=[[0,0,-1],[2,0,1]]"])  # the square's left and right
    trainer = Trainer(cfg)
    checked = []

    def record(batch, frame_index, kw):
        _, actions, mask, _, _ = trainer.task.inputs(batch)
        window = camera_positions(actions, mask, trainer.engine.module.camera_table)  # (B, T, 2) over the window
        camera = kw["camera"]
        picked = window[:, frame_index[0]][:, :camera.shape[1]]
        checked.append((bool(torch.equal(camera, picked)), bool((frame_index[:, 1:] - frame_index[:, :-1] > 1).any())))

    spy_on_forward(trainer, record)
    assert trainer.fit().step == 3
    assert len(checked) >= 4 and all(same for same, _ in checked), checked  # the loss and self-forcing samples alike
    assert any(gap for _, gap in checked)  # ... including frames with left-out frames between them
    models, meta = load_export(tmp_path / "run" / "export")
    assert meta["dit_config"]["world_heads"] == 1 and models["dit"].camera_table[2].tolist() == [0.0, 1.0]
    # scripts/recall_error.py on its held-out episode: the error split by what only memory can draw
    import json
    import subprocess
    import sys

    from worldsim.train.warm_start import add_pathway

    out = tmp_path / "recall.json"
    composited = add_pathway(tmp_path / "run" / "export", tmp_path / "composited", previous_frames=2, conv_prior=8,
                             prior_composite=True)  # a conv prior's guess composited in, its mask at 0.5 untrained
    run = subprocess.run([sys.executable, "scripts/recall_error.py", f"world={tmp_path / 'run' / 'export'}",
                          f"comp={composited}", "--store", str(store), "--frames", "5", "--windows", "32", "--moves",
                          "[[0, 0, -1], [2, 0, 1]]", "--threads", "1", "--memoryless", "--split", "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["windows"] > 0 and 0 < result["recalled_share"] < 1
    assert all(v > 0 for m in ("world", "world/last", "copy", "comp:dit", "comp:prior") for v in result["mse"][m].values())
    assert list(result["mask_toward_prior"]) == ["comp"]  # only the composited DiT is taken apart
    assert all(abs(v - 0.5) < 1e-6 for v in result["mask_toward_prior"]["comp"].values())
    assert result["mse"]["world/last"] != result["mse"]["world"]  # given only the frame before, it draws otherwise


def test_world_heads_can_see_where_the_view_went_from_a_store_state(tmp_path):
    """`camera_state`: the world heads' camera is the recorded position (the square's column here, which a push into
    a wall does not move), from 0 at each window's first latent frame, not the actions' sum."""
    store = make_store(tmp_path / "square.zarr", episodes=4, steps=24, state=True)
    tiny_vae(tmp_path)
    cfg = compose("train", [f"data={store}", f"vae={tmp_path / 'vae'}", f"run_dir={tmp_path / 'run'}", "model=tiny",
                            "window=17", "batch_size=2", "steps=2", "checkpoint_every=2", "video_every=0",
                            "progress=false", "optim.warmup_steps=1", f"dist.port={free_port()}",
                            "context.schemes=[long-range]", "context.budget=3", "context.prob=1.0",
                            "camera_state=square_x", "+model_overrides.world_heads=1",
                            "+model_overrides.camera_moves=[[0,0,-1],[2,0,1]]"])
    trainer = Trainer(cfg)
    seen = []

    def record(batch, frame_index, kw):
        where = batch["camera"]  # (B, T, 2): (0, column - the window's first column)
        assert torch.equal(where[:, 0], torch.zeros_like(where[:, 0])) and torch.equal(where[..., 0], torch.zeros_like(where[..., 0]))
        seen.append(torch.equal(kw["camera"], where[:, frame_index[0]].to(kw["camera"].dtype)))

    spy_on_forward(trainer, record)
    assert trainer.fit().step == 2 and seen and all(seen)
    import pytest

    with pytest.raises(ValueError, match="camera_state"):
        compose("train", [f"data={store}", "task=vae", "camera_state=square_x"])


def test_recall_weight_reads_the_recorded_camera_without_world_heads(tmp_path, monkeypatch):
    """`objective.recall_weight` with `camera_state` and a plain DiT: the recalled pixels come from where the view went,
    and the DiT itself gets no camera (it has no world heads to use one)."""
    import pytest

    import worldsim.train.tasks as tasks
    from worldsim.models.camera import recalled_patches

    store = make_store(tmp_path / "square.zarr", episodes=4, steps=24, state=True)
    tiny_vae(tmp_path)
    cfg = compose("train", [f"data={store}", f"vae={tmp_path / 'vae'}", f"run_dir={tmp_path / 'run'}", "model=tiny",
                            "window=17", "batch_size=2", "steps=2", "checkpoint_every=2", "video_every=0",
                            "progress=false", "optim.warmup_steps=1", f"dist.port={free_port()}",
                            "camera_state=square_x", "objective.recall_weight=2.0"])
    trainer = Trainer(cfg)
    calls, real_loss = [], tasks.diffusion_loss

    def diffusion_loss(module, x0, *args, camera=None, recalled=None, **kw):
        calls.append((camera, recalled, x0.shape))
        return real_loss(module, x0, *args, camera=camera, recalled=recalled, **kw)

    monkeypatch.setattr(tasks, "diffusion_loss", diffusion_loss)
    batches = []
    real = trainer.task.loss
    trainer.task.loss = lambda module, batch, generator: (batches.append(batch["camera"]), real(module, batch, generator))[1]
    assert trainer.fit().step == 2 and len(calls) == len(batches) == 2
    for (camera, recalled, shape), where in zip(calls, batches):
        assert camera is None and recalled is not None and recalled.shape == (shape[0], shape[1], 1, *shape[-2:])
        p = trainer.task.model_config.patch_size
        expected = recalled_patches(where, shape[-2] // p, shape[-1] // p).repeat_interleave(p, 2).repeat_interleave(p, 3)
        assert torch.equal(recalled[:, :, 0], expected)
    assert any(bool(r.any()) for _, r, _ in calls)  # the square went back to a column it had left
    with pytest.raises(ValueError, match="recall_weight and recall_own_weight need a camera"):  # no camera: one line
        compose("train", [f"data={store}", f"vae={tmp_path / 'vae'}", "model=tiny", "objective.recall_weight=2.0"])
