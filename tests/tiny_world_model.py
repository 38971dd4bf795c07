"""A tiny real export (random weights) shared by the simulator and evaluation tests.

Real model code and real export files: the env's and the evaluator's contracts do not depend on
how well the model is trained. Import it as `from tiny_world_model import ...` (tests/ is on the
path through tests/conftest.py).
"""

from __future__ import annotations

import torch
from gymnasium import spaces

from worldsim.models.ae_presets import autoencoder_config
from worldsim.models.autoencoder import VideoAutoencoder
from worldsim.models.presets import build_dit
from worldsim.spaces import space_to_json
from worldsim.export import write_export

FRAME = 16  # frames are 16x16: latents 4x4 (s = 4), 4 tokens per frame with patch 2
ACTIONS = spaces.Discrete(5)  # like the probe world's pusher


def tiny_models(seed: int = 0, action_space: spaces.Space = ACTIONS, termination_bias: float = -8.0,
                perturb: bool = True, previous_frame: bool = True,
                dit_overrides: dict | None = None) -> tuple[VideoAutoencoder, torch.nn.Module]:
    """Freshly initialised tiny models (k = 2).

    `perturb` nudges every weight so that adaLN-Zero's zero start cannot hide bugs.
    `termination_bias` sets the termination logit's bias: very negative, episodes never end; very
    positive, they end at the first step.
    """
    torch.manual_seed(seed)
    ae = VideoAutoencoder(autoencoder_config("tiny"))
    ae.set_latent_stats(torch.zeros(4), torch.ones(4))
    space = space_to_json(action_space) if action_space is not None else None  # None: an action-free model
    dit = build_dit("tiny", latent_channels=4, action_space=space, action_substeps=2,
                    reward_head=True, termination_head=True, previous_frame=previous_frame, **(dit_overrides or {}))
    with torch.no_grad():
        if perturb:
            for p in dit.parameters():
                p.add_(0.05 * torch.randn_like(p))
        dit.termination_head.mlp[-1].bias.fill_(termination_bias)
    return ae.eval(), dit.eval()


def make_export(folder, seed: int = 0, action_space: spaces.Space = ACTIONS, termination_bias: float = -8.0,
                perturb: bool = True, extra: dict | None = None, dit_overrides: dict | None = None):
    """Write the tiny models as an export folder and return its path; `extra` goes into its config.json."""
    ae, dit = tiny_models(seed, action_space, termination_bias, perturb, dit_overrides=dit_overrides)
    return write_export(folder, ae, dit, (FRAME, FRAME), space_to_json(action_space) if action_space is not None else None,
                        extra)
