"""A tiny real export (random weights) and a tiny episode store, shared by the simulator tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from worldsim.models.ae_presets import autoencoder_config
from worldsim.models.autoencoder import VideoAutoencoder
from worldsim.models.presets import build_dit
from worldsim.spaces import space_to_json
from worldsim.train.export import write_export

FRAME = 16  # frames are 16x16: latents 4x4 (s = 4), 4 tokens per frame with patch 2
ACTIONS = spaces.Discrete(5)


def tiny_models(seed: int = 0, action_space: spaces.Space = ACTIONS, termination_bias: float = -8.0
                ) -> tuple[VideoAutoencoder, torch.nn.Module]:
    """Freshly initialised tiny models, every weight perturbed so that adaLN-Zero's zeros do not hide bugs.

    `termination_bias` sets the termination logit's bias: very negative, episodes never end; very positive,
    they end at the first step.
    """
    torch.manual_seed(seed)
    ae = VideoAutoencoder(autoencoder_config("tiny"))
    ae.set_latent_stats(torch.zeros(4), torch.ones(4))
    dit = build_dit("tiny", latent_channels=4, action_space=space_to_json(action_space), action_substeps=2,
                    reward_head=True, termination_head=True)
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
        dit.termination_head.mlp[-1].bias.fill_(termination_bias)
    return ae.eval(), dit.eval()


def make_export(folder, seed: int = 0, action_space: spaces.Space = ACTIONS, termination_bias: float = -8.0):
    ae, dit = tiny_models(seed, action_space, termination_bias)
    return write_export(folder, ae, dit, (FRAME, FRAME), space_to_json(action_space))


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def store_path(tmp_path_factory):
    from worldsim.data.store import EpisodeStore

    path = tmp_path_factory.mktemp("data") / "tiny.zarr"
    rng = np.random.default_rng(0)
    with EpisodeStore.create(path, env_id="test", frame_size=(FRAME, FRAME), fps=15.0, action_space=ACTIONS) as store:
        for length in (12, 9, 3):
            obs = rng.integers(0, 256, (length + 1, FRAME, FRAME, 3), dtype=np.uint8)
            store.append_episode(obs, rng.integers(0, 5, (length, 1)))
    return str(path)
