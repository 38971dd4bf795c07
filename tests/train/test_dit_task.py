"""The DiT task in this process: latents of an exported autoencoder, context-scheme subsets, rollout video."""

from __future__ import annotations

import torch
from helpers import free_port, make_store

from worldsim.cli import compose
from worldsim.models.ae_presets import autoencoder_config
from worldsim.models.autoencoder import VideoAutoencoder
from worldsim.train.context_sampling import ContextSamplingConfig, select_frames
from worldsim.train.export import load_export, write_export
from worldsim.train.trainer import Trainer


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
    torch.manual_seed(0)
    ae = VideoAutoencoder(autoencoder_config("tiny"))
    ae.set_latent_stats(torch.zeros(4), torch.ones(4))
    write_export(tmp_path / "vae", ae, None, (16, 16), None)
    cfg = compose("train", [f"data={store}", f"vae={tmp_path / 'vae'}", f"run_dir={tmp_path / 'run'}", "model=tiny",
                            "window=9", "batch_size=2", "steps=3", "checkpoint_every=3", "video_every=3",
                            "log_every=1", "progress=false", "optim.warmup_steps=1", f"dist.port={free_port()}",
                            "context.schemes=[long-range,hierarchical]", "context.budget=2", "context.prob=1.0"])
    trainer = Trainer(cfg)
    calls = []
    real = trainer.task.loss

    def spy(module, batch, generator):  # records the frame indices the model is trained on
        original = trainer.engine.module.forward

        def forward(x, noise_level, actions=None, action_mask=None, frame_index=None, **kw):
            calls.append(None if frame_index is None else frame_index[0].tolist())
            return original(x, noise_level, actions, action_mask, frame_index, **kw)

        trainer.engine.module.forward = forward
        try:
            return real(module, batch, generator)
        finally:
            del trainer.engine.module.forward

    trainer.task.loss = spy
    result = trainer.fit()
    assert result.step == 3 and len(calls) == 3
    assert all(c is not None and len(c) <= 3 and c == sorted(c) for c in calls), calls
    assert (tmp_path / "run" / "videos" / "video_rollout_00000003.mp4").is_file()
    models, meta = load_export(tmp_path / "run" / "export")
    assert meta["kind"] == "dit" and meta["dit_config"]["action_substeps"] == 2
    assert models["dit"].reward_head is not None and models["dit"].termination_head is not None
    assert torch.equal(models["autoencoder"].encoder.conv_in.conv.weight, ae.encoder.conv_in.conv.weight)
