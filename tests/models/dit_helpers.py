"""Tiny DiTs and inputs shared by the DiT tests."""

import torch
from gymnasium import spaces

from worldsim.models.dit import DiT
from worldsim.models.presets import build_dit
from worldsim.spaces import space_to_json

C, K, N_ACTIONS = 4, 2, 5


def tiny_dit(**overrides) -> DiT:
    """Tiny DiT whose zero-initialised (adaLN-Zero) weights are randomised, so outputs depend on inputs."""
    torch.manual_seed(0)
    config = dict(latent_channels=C, action_space=space_to_json(spaces.Discrete(N_ACTIONS)), action_substeps=K,
                  reward_head=True, termination_head=True)
    if overrides.get("previous_frame") == "motion":  # the previous-frame pathway with its action-moved copy
        overrides.update(previous_frame=True, motion_radius=1, motion_groups=2)
    if overrides.get("previous_frame") == "two":  # the pathway with the frame before the previous one too
        overrides.update(previous_frame=True, previous_frames=2)
    if overrides.get("previous_frame") == "field":  # and the previous frame moved pixel by pixel (motion field)
        overrides.update(previous_frame=True, previous_frames=2, motion_field=4, motion_field_radius=1)
    if overrides.get("previous_frame") == "prior":  # and a conv net's guess of the frame (conv prior)
        overrides.update(previous_frame=True, previous_frames=2, conv_prior=8)
    model = build_dit("tiny", **{**config, **overrides})
    with torch.no_grad():
        for p in model.parameters():
            if (p == 0).all():
                p.normal_(std=0.2)
    return model.eval()


def dit_inputs(b=2, t=5, h=8, w=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(b, t, C, h, w, generator=g),
        noise_level=torch.rand(b, t, generator=g),
        actions=torch.randint(0, N_ACTIONS, (b, t, K, 1), generator=g),
        action_mask=torch.rand(b, t, K, generator=g) > 0.3,
        frame_index=torch.tensor([0, 5, 17, 18, 19, 20, 21][:t]).repeat(b, 1),
    )


def frames_of(inputs, sl):
    return {k: v[:, sl] for k, v in inputs.items()}


def warm_started(base: DiT, new_prefix: str, **overrides) -> DiT:
    """A model with a pathway `base` lacks, warm-started from it: only `new_prefix...` parameters are new, and
    (zero-initialised) they change no prediction."""
    model = build_dit("tiny", latent_channels=C, action_space=space_to_json(spaces.Discrete(N_ACTIONS)),
                      action_substeps=K, reward_head=True, termination_head=True, **overrides).eval()
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert unexpected == [] and missing and all(n.startswith(new_prefix) for n in missing)
    inputs = dit_inputs(t=4)
    torch.testing.assert_close(model(**inputs).prediction, base(**inputs).prediction, atol=0, rtol=0)
    return model
