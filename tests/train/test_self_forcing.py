"""Self-forcing in DiT training: the newest context frame replaced by the model's own sample."""

import torch


def test_own_newest_context_is_the_models_one_step_sample_where_drawn():
    """Self-forcing (`objective.own_context_prob`): the newest context frame becomes what a 1-step rollout makes of it."""
    from gymnasium import spaces

    from worldsim.diffusion.samplers import sample_euler
    from worldsim.models.presets import build_dit
    from worldsim.spaces import space_to_json
    from worldsim.train.tasks import own_newest_context

    torch.manual_seed(0)
    model = build_dit("tiny", latent_channels=4, action_space=space_to_json(spaces.Discrete(3)), action_substeps=2).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # adaLN-Zero starts at a zero output
    x0 = torch.randn(3, 5, 4, 4, 4)
    actions = torch.randint(0, 3, (3, 5, 2, 1))
    mask = torch.ones(3, 5, 2, dtype=torch.bool)
    frame_index = torch.arange(5).repeat(3, 1)
    same = own_newest_context(model, x0, actions, mask, frame_index, 4, torch.Generator().manual_seed(1), prob=0.0)
    assert torch.equal(same, x0)
    own = own_newest_context(model, x0, actions, mask, frame_index, 4, torch.Generator().manual_seed(1), prob=1.0)
    assert torch.equal(own[:, :3], x0[:, :3]) and torch.equal(own[:, 4:], x0[:, 4:])  # only frame 3, the newest context
    noise = torch.randn((3, 1, 4, 4, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        rollout = sample_euler(model, (3, 1, 4, 4, 4), steps=1, noise=noise, context=x0[:, :3], actions=actions[:, :4],
                               action_mask=mask[:, :4])
    torch.testing.assert_close(own[:, 3:4], rollout, atol=1e-5, rtol=1e-5)
