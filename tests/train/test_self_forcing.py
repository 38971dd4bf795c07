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


def test_reencoded_own_context_is_the_drawn_frame_encoded_again_as_a_served_simulator_sees_it():
    """`objective.own_context_reencode`: the chosen samples' own frame enters the context decoded after the window's
    frames before it, drawn as uint8 and encoded again (what `reencode` serving holds); the others stay real."""
    from gymnasium import spaces

    from worldsim.diffusion.objective import ObjectiveConfig
    from worldsim.frames import frames_to_float, frames_to_uint8
    from worldsim.models.ae_presets import autoencoder_config
    from worldsim.models.autoencoder import VideoAutoencoder
    from worldsim.spaces import space_to_json
    from worldsim.train.config import TrainConfig
    from worldsim.train.tasks import DiTTask, own_newest_context

    torch.manual_seed(0)
    ae = VideoAutoencoder(autoencoder_config("tiny")).eval()
    cfg = TrainConfig(task="dit", data="unused", vae="unused", model="tiny", window=9,
                      objective=ObjectiveConfig(own_context_prob=0.5, own_context_reencode=3))
    task = DiTTask(cfg, (16, 16), space_to_json(spaces.Discrete(3)), ae, {})
    window = torch.randn(4, 5, ae.cfg.latent_channels, 4, 4)
    pick = torch.tensor([0, 2, 3, 4])  # a cut with a gap: frame 2 of the cut is window frame 3
    use = torch.tensor([True, False, True, True])
    sampled = torch.randn(3, 1, ae.cfg.latent_channels, 4, 4)

    def drawn_again(latents):
        frames = frames_to_uint8(ae.decode(ae.denormalize(latents)))
        return ae.normalize(ae.encode(frames_to_float(frames)).mode())[:, -1:]

    with torch.no_grad():
        expected = drawn_again(torch.cat([window[use, 1:3], sampled], dim=1))  # the 3 latent frames that end at it
        assert not torch.allclose(expected, drawn_again(torch.cat([window[use, :3], sampled], dim=1)), atol=1e-4)
    torch.testing.assert_close(task.reencoded(window, pick, sampled, use, 2), expected)
    assert not torch.allclose(expected, sampled, atol=0.1)  # a real change, not the sample passed through

    # in self-forcing: the rows not drawn keep their real frames, the drawn ones hold what reencode gives
    model = task.model.eval()
    x0 = window[:, pick]
    actions = torch.randint(0, 3, (4, 4, 2, 1))
    mask = torch.ones(4, 4, 2, dtype=torch.bool)
    frame_index = pick.repeat(4, 1)
    calls = []

    def reencode(s, u, j):
        calls.append((s.shape[0], u.clone(), j))
        return torch.full_like(s, 7.0)

    out = own_newest_context(model, x0, actions, mask, frame_index, 3, torch.Generator().manual_seed(5), 0.5,
                             reencode=reencode)
    (n, chosen, j), = calls
    assert j == 2 and n == int(chosen.sum()) and 0 < n < 4
    assert torch.equal(out[chosen, 2], torch.full_like(out[chosen, 2], 7.0))
    assert torch.equal(out[~chosen], x0[~chosen]) and torch.equal(out[:, [0, 1, 3]], x0[:, [0, 1, 3]])
    plain = own_newest_context(model, x0, actions, mask, frame_index, 3, torch.Generator().manual_seed(5), 0.5)
    assert torch.equal(plain[~chosen], x0[~chosen]) and not torch.equal(plain[chosen, 2], out[chosen, 2])
    try:
        ObjectiveConfig(own_context_prob=0.5, own_context_reencode=-1)
    except ValueError as e:
        assert "own_context_reencode" in str(e)
    else:
        raise AssertionError("own_context_reencode=-1 accepted")
    try:
        ObjectiveConfig(own_context_reencode=4)  # without self-forcing it would do nothing
    except ValueError as e:
        assert "own_context_prob" in str(e)
    else:
        raise AssertionError("own_context_reencode without own_context_prob accepted")
