"""End to end: a DiT trained a few hundred steps on a synthetic action-controlled world follows actions."""

from __future__ import annotations

import torch
from gymnasium import spaces

from worldsim.diffusion import toy
from worldsim.diffusion.objective import ObjectiveConfig, diffusion_loss
from worldsim.diffusion.samplers import sample_euler
from worldsim.models.presets import build_dit
from worldsim.spaces import space_to_json

FRAMES = 4


def _train(steps: int, action_dropout: float) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_dit("tiny", latent_channels=toy.CHANNELS, action_space=space_to_json(spaces.Discrete(5)))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    data, noise = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    config = ObjectiveConfig(action_dropout=action_dropout, context_prob=1.0)
    for _ in range(steps):
        x0, actions = toy.make_batch(32, FRAMES, data)
        loss, _ = diffusion_loss(model, x0, actions, None, None, noise, config)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _action_win(model: torch.nn.Module) -> float:
    """How often the frame sampled with the true action is closer to the truth than with another action."""
    x0, actions = toy.make_batch(128, FRAMES, torch.Generator().manual_seed(123))
    other = actions.clone()
    other[:, -1] = (actions[:, -1] + 1 + torch.randint(0, 4, (128, 1, 1), generator=torch.Generator().manual_seed(5))) % 5
    errors = []
    for acts in (actions, other):
        with torch.no_grad():
            new = sample_euler(model, (128, 1, toy.CHANNELS, toy.SIZE, toy.SIZE), steps=4,
                               generator=torch.Generator().manual_seed(7), context=x0[:, :-1], actions=acts)
        errors.append((new[:, 0] - x0[:, -1]).pow(2).mean(dim=(1, 2, 3)))
    return ((errors[0] < errors[1]).float() + 0.5 * (errors[0] == errors[1]).float()).mean().item()


def test_dit_learns_to_follow_actions_and_a_blind_one_does_not():
    follows = _action_win(_train(300, action_dropout=0.1))
    blind = _action_win(_train(300, action_dropout=1.0))  # never sees an action: the metric must not reward it
    assert follows > 0.85, follows
    assert abs(blind - 0.5) < 0.15, blind
