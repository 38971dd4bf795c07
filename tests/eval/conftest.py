"""A tiny DiT export (random weights, 16x16 frames, Discrete(5) actions like the probe world, k = 2)."""

from __future__ import annotations

import pytest
import torch
from gymnasium import spaces

from worldsim.models.ae_presets import autoencoder_config
from worldsim.models.autoencoder import VideoAutoencoder
from worldsim.models.presets import build_dit
from worldsim.spaces import space_to_json
from worldsim.train.export import write_export

FRAME = 16


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    torch.manual_seed(0)
    ae = VideoAutoencoder(autoencoder_config("tiny"))
    ae.set_latent_stats(torch.zeros(4), torch.ones(4))
    space = space_to_json(spaces.Discrete(5))
    dit = build_dit("tiny", latent_channels=4, action_space=space, action_substeps=2,
                    reward_head=True, termination_head=True)
    with torch.no_grad():
        dit.termination_head.mlp[-1].bias.fill_(-8.0)  # episodes never end
    return write_export(tmp_path_factory.mktemp("export"), ae.eval(), dit.eval(), (FRAME, FRAME), space)
