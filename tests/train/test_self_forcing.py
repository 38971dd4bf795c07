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


def test_own_context_over_several_frames_is_the_models_rollout_and_keeps_the_first_frame_real():
    """`objective.own_context_frames`: the newest frames become a 1-step rollout from the real frames before them."""
    from gymnasium import spaces

    from worldsim.diffusion.objective import ObjectiveConfig
    from worldsim.diffusion.samplers import sample_euler
    from worldsim.models.presets import build_dit
    from worldsim.spaces import space_to_json
    from worldsim.train.tasks import own_newest_context

    torch.manual_seed(0)
    model = build_dit("tiny", latent_channels=4, action_space=space_to_json(spaces.Discrete(3)), action_substeps=2).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x0 = torch.randn(2, 5, 4, 4, 4)
    actions = torch.randint(0, 3, (2, 5, 2, 1))
    mask = torch.ones(2, 5, 2, dtype=torch.bool)
    frame_index = torch.tensor([[0, 2, 3, 5, 6], [0, 1, 2, 3, 4]])  # a long-range cut: gaps the rollout sees too
    own = own_newest_context(model, x0, actions, mask, frame_index, 4, torch.Generator().manual_seed(3), prob=1.0,
                             frames=2)
    assert torch.equal(own[:, :2], x0[:, :2]) and torch.equal(own[:, 4:], x0[:, 4:])
    g = torch.Generator().manual_seed(3)
    noises = [torch.randn((2, 1, 4, 4, 4), generator=g) for _ in range(2)]
    rollout = x0[:, :2]
    with torch.no_grad():
        for j, noise in zip((2, 3), noises):
            new = sample_euler(model, (2, 1, 4, 4, 4), steps=1, noise=noise, context=rollout, actions=actions[:, :j + 1],
                               action_mask=mask[:, :j + 1], frame_index=frame_index[:, :j + 1])
            rollout = torch.cat([rollout, new], dim=1)
    torch.testing.assert_close(own[:, 2:4], rollout[:, 2:4], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(own[:, 3], own_newest_context(model, x0, actions, mask, frame_index, 4,
                                                            torch.Generator().manual_seed(3), prob=1.0)[:, 3])
    # more frames than the context has: the first context frame stays real
    every = own_newest_context(model, x0, actions, mask, frame_index, 4, torch.Generator().manual_seed(3), prob=1.0,
                               frames=9)
    assert torch.equal(every[:, :1], x0[:, :1]) and not torch.equal(every[:, 1], x0[:, 1])
    try:
        ObjectiveConfig(own_context_frames=0)
    except ValueError as e:
        assert "own_context_frames" in str(e)
    else:
        raise AssertionError("own_context_frames=0 accepted")
