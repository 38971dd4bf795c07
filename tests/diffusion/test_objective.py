import math

import pytest
import torch
from gymnasium import spaces

from worldsim.diffusion.objective import (
    ObjectiveConfig,
    add_noise,
    change_weights,
    diffusion_loss,
    pixel_weights,
    predict_noise,
    predict_x0,
    sample_noise_levels,
    schedule,
    v_target,
)
from worldsim.models.presets import build_dit
from worldsim.spaces import space_to_json




def test_noise_levels_are_per_frame_with_a_context_prefix():
    config = ObjectiveConfig(context_prob=0.5, context_noise_max=0.1)
    t, ctx = sample_noise_levels(400, 6, torch.Generator().manual_seed(0), config)
    assert t.shape == ctx.shape == (400, 6) and ctx.dtype == torch.bool
    assert ((t >= 0) & (t <= 1)).all()
    assert (t[ctx] <= 0.1).all() and t[~ctx].mean() > 0.4
    assert not ctx[:, -1].any()  # at least one frame is always denoised
    n_ctx = ctx.sum(1)
    assert (ctx == (torch.arange(6) < n_ctx[:, None])).all()  # context is a prefix
    assert 0.35 < (n_ctx > 0).float().mean() < 0.65 and set(n_ctx.tolist()) == set(range(6))
    assert t[~ctx].std() > 0.1 and (t[:, 1:] != t[:, :1]).any()  # independent per frame
    again, _ = sample_noise_levels(400, 6, torch.Generator().manual_seed(0), config)
    torch.testing.assert_close(t, again, atol=0, rtol=0)


def test_context_frames_fixes_the_split_in_every_sample():
    config = ObjectiveConfig(context_prob=0.5)
    t, ctx = sample_noise_levels(50, 6, torch.Generator().manual_seed(0), config, context_frames=4)
    assert (ctx == (torch.arange(6) < 4)).all() and (t[:, :4] == 0).all()
    _, none = sample_noise_levels(50, 6, torch.Generator().manual_seed(0), config, context_frames=0)
    assert not none.any()
    with pytest.raises(ValueError, match="context_frames"):
        sample_noise_levels(2, 6, torch.Generator().manual_seed(0), config, context_frames=6)


def test_logit_normal_concentrates_mid_noise_compared_to_uniform():
    g = torch.Generator().manual_seed(1)
    none = dict(context_prob=0.0)
    ln, _ = sample_noise_levels(2000, 4, g, ObjectiveConfig(time_sampling="logit_normal", **none))
    un, _ = sample_noise_levels(2000, 4, g, ObjectiveConfig(time_sampling="uniform", **none))
    mid = lambda t: ((t > 0.25) & (t < 0.75)).float().mean()  # noqa: E731
    assert mid(ln) > 0.6 > mid(un) > 0.4


def test_pure_noise_prob_puts_whole_samples_at_t_one_and_keeps_context():
    g = torch.Generator().manual_seed(2)
    base = sample_noise_levels(4000, 4, torch.Generator().manual_seed(2), ObjectiveConfig())[0]
    assert torch.equal(base, sample_noise_levels(4000, 4, torch.Generator().manual_seed(2),
                                                 ObjectiveConfig(pure_noise_prob=0.0))[0])  # default stream unchanged
    t, ctx = sample_noise_levels(4000, 4, g, ObjectiveConfig(pure_noise_prob=0.5, context_noise_max=0.1))
    pure = ((t == 1) | ctx).all(dim=1) & (t == 1).any(dim=1)
    assert 0.45 < pure.float().mean() < 0.55  # about half of the samples, every denoised frame at t = 1
    assert (t[ctx] <= 0.1).all()  # context frames keep their low levels
    with pytest.raises(ValueError, match="pure_noise_prob"):
        ObjectiveConfig(pure_noise_prob=1.5)


def test_config_validation():
    with pytest.raises(ValueError, match="time_sampling"):
        ObjectiveConfig(time_sampling="cosine")
    with pytest.raises(ValueError, match="context_prob"):
        ObjectiveConfig(context_prob=1.5)


def test_forward_process_endpoints_and_v_is_its_derivative_along_the_angle():
    x0, eps = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 4, 2, 2)
    torch.testing.assert_close(add_noise(x0, eps, torch.zeros(2, 3)), x0)
    torch.testing.assert_close(add_noise(x0, eps, torch.ones(2, 3)), eps)
    alpha, sigma = schedule(torch.rand(100))
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones(100))  # variance preserving
    t, dt = torch.rand(2, 3) * 0.9 + 0.05, 1e-3
    finite_difference = (add_noise(x0, eps, t + dt) - add_noise(x0, eps, t)) / dt  # d x_t / dt = (pi / 2) v
    torch.testing.assert_close(finite_difference, math.pi / 2 * v_target(x0, eps, t), atol=5e-3, rtol=5e-3)
    x_t, v = add_noise(x0, eps, t), v_target(x0, eps, t)
    torch.testing.assert_close(predict_x0(x_t, v, t), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(predict_noise(x_t, v, t), eps, atol=1e-5, rtol=1e-5)


def _model(heads=False):
    torch.manual_seed(0)
    return build_dit("tiny", latent_channels=2, action_space=space_to_json(spaces.Discrete(3)),
                     reward_head=heads, termination_head=heads)


def _toy(batch=8, seed=0):
    """Each frame is a constant image whose value is its action (a learnable, action-driven video)."""
    g = torch.Generator().manual_seed(seed)
    actions = torch.randint(0, 3, (batch, 3, 1, 1), generator=g)
    x0 = (actions.float() - 1).reshape(batch, 3, 1, 1, 1).expand(batch, 3, 2, 4, 4).clone()
    return x0, actions


def test_context_frames_carry_no_diffusion_loss():
    model = _model()
    x0, actions = _toy()
    config = ObjectiveConfig(context_prob=1.0)
    _, is_context = sample_noise_levels(8, 3, torch.Generator().manual_seed(3), config)
    assert is_context.any()

    def spoiled(*args):
        out = model(*args)
        out.prediction = torch.where(is_context[:, :, None, None, None], 1e3, out.prediction)
        return out

    a, _ = diffusion_loss(model, x0, actions, None, None, torch.Generator().manual_seed(3), config)
    b, _ = diffusion_loss(spoiled, x0, actions, None, None, torch.Generator().manual_seed(3), config)
    torch.testing.assert_close(a, b)


def _exact_but(x0, row, col, frame=slice(None)):
    """A model whose v-prediction is exact (the true v, recovered from x_t) except +1 at latent pixel (row, col) of
    `frame` (every frame by default)."""
    def model(x, t, *args, **kwargs):
        alpha, sigma = (s[:, :, None, None, None] for s in schedule(t))
        pred = v_target(x0, (x - alpha * x0) / sigma, t).clone()
        pred[:, frame, :, row, col] += 1.0
        return type("Out", (), {"prediction": pred})()
    return model


def _loss(model, x0, cfg):
    return float(diffusion_loss(model, x0, None, None, None, torch.Generator().manual_seed(9), cfg)[0])


def test_change_weighting_makes_an_error_where_the_frame_changed_cost_more():
    # two frames; the second differs from the first only in the top-left latent pixel
    x0 = torch.zeros(1, 2, 2, 4, 4)
    x0[0, 1, :, 0, 0] = 2.0
    w = change_weights(x0, 4.0)
    assert torch.equal(w[0, 0], torch.ones(1, 4, 4))  # no previous frame: plain weights
    assert w[0, 1, 0, 0, 0] == 5.0 and w[0, 1, 0, 3, 3] == 1.0  # change clipped to 1: weight 1 + 4
    config = ObjectiveConfig(context_prob=0.0, action_dropout=0.0, change_weight=4.0)
    plain = ObjectiveConfig(context_prob=0.0, action_dropout=0.0)

    def wrong_at(row, col):  # exact except at one latent pixel of the second frame
        return _exact_but(x0, row, col, frame=1)

    def loss(model, cfg):
        return _loss(model, x0, cfg)

    # the same error costs the same without weighting, and more where the frame changed with it
    assert loss(wrong_at(0, 0), plain) == pytest.approx(loss(wrong_at(3, 3), plain))
    assert loss(wrong_at(0, 0), config) > 3 * loss(wrong_at(3, 3), config)
    with pytest.raises(ValueError, match="change_weight"):
        ObjectiveConfig(change_weight=-1.0)


def test_reward_and_termination_only_where_there_is_a_target():
    model = _model(heads=True)
    x0, actions = _toy()
    reward = torch.full((8, 3), float("nan"))
    reward[:, 2] = 1.0
    termination = torch.full((8, 3), float("nan"))
    termination[0, 1] = 1.0
    gen = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    loss, logs = diffusion_loss(model, x0, actions, None, None, gen(), reward=reward, termination=termination)
    logs = {k: float(v) for k, v in logs.items()}
    assert torch.isfinite(loss) and {"loss", "diffusion", "reward", "termination", "noise_level"} <= set(logs)
    assert logs["loss"] == pytest.approx(logs["diffusion"] + logs["reward"] + logs["termination"], rel=1e-5)
    changed = reward.clone()
    changed[:, 0] = 50.0  # a target on another frame changes the reward term
    _, logs2 = diffusion_loss(model, x0, actions, None, None, gen(), reward=changed, termination=termination)
    assert logs2["reward"] > logs["reward"] + 100
    nothing = torch.full((8, 3), float("nan"))
    _, logs3 = diffusion_loss(model, x0, actions, None, None, gen(), reward=nothing, termination=nothing)
    assert logs3["reward"] == 0 and logs3["termination"] == 0


def test_balanced_reward_loss_weighs_a_rare_reward_as_much_as_all_the_zeros():
    x0, actions = _toy()
    reward = torch.zeros(8, 3)
    reward[0, 2] = 1.0  # one rewarded frame in 24

    def constant(value):  # a model whose reward head says `value` everywhere
        def model(*args):
            out = _model(heads=True)(*args)
            out.reward = torch.full_like(out.reward, value)
            return out
        return model

    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    plain = ObjectiveConfig()
    balanced = ObjectiveConfig(reward_balance=True)
    zero_plain = float(diffusion_loss(constant(0.0), x0, actions, None, None, gen(), plain, reward=reward)[1]["reward"])
    zero_bal = float(diffusion_loss(constant(0.0), x0, actions, None, None, gen(), balanced, reward=reward)[1]["reward"])
    assert zero_plain == pytest.approx(1 / 24)  # predicting no reward at all is nearly free ...
    assert zero_bal == pytest.approx(0.5)  # ... but not once the rare reward weighs half
    half_bal = float(diffusion_loss(constant(0.5), x0, actions, None, None, gen(), balanced, reward=reward)[1]["reward"])
    assert half_bal == pytest.approx(0.25)


def test_heads_learn_only_from_frames_noised_at_most_heads_max_noise():
    model = _model(heads=True)
    x0, actions = _toy()
    reward = torch.ones(8, 3)
    config = ObjectiveConfig(heads_max_noise=0.3)
    t, _ = sample_noise_levels(8, 3, torch.Generator().manual_seed(6), config)
    low = t <= 0.3
    assert low.any() and (~low).any()

    def spoiled(*args):  # a reward far off on the noisy frames only: must not show in the loss
        out = model(*args)
        out.reward = torch.where(low, out.reward, torch.full_like(out.reward, 1e3))
        return out

    a = diffusion_loss(model, x0, actions, None, None, torch.Generator().manual_seed(6), config, reward=reward)[1]
    b = diffusion_loss(spoiled, x0, actions, None, None, torch.Generator().manual_seed(6), config, reward=reward)[1]
    torch.testing.assert_close(a["reward"], b["reward"])
    c = diffusion_loss(spoiled, x0, actions, None, None, torch.Generator().manual_seed(6), ObjectiveConfig(),
                       reward=reward)[1]
    assert c["reward"] > 1e4


def test_training_the_tiny_model_lowers_the_loss():
    torch.manual_seed(0)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x_eval, a_eval = _toy(batch=32, seed=100)

    def eval_loss():
        with torch.no_grad():
            return diffusion_loss(model, x_eval, a_eval, None, None, torch.Generator().manual_seed(7))[0].item()

    before = eval_loss()
    data = torch.Generator().manual_seed(1)
    noise = torch.Generator().manual_seed(2)
    for step in range(40):
        x0, actions = _toy(batch=16, seed=int(torch.randint(0, 10**6, (1,), generator=data)))
        loss, _ = diffusion_loss(model, x0, actions, None, None, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.7 * before, (before, after)


def test_motion_weight_teaches_the_kernel_to_move_the_previous_frame_as_the_action_says():
    from worldsim.models.presets import build_dit
    from worldsim.spaces import space_to_json

    torch.manual_seed(0)
    model = build_dit("tiny", latent_channels=4, action_space=space_to_json(spaces.Discrete(3)), action_substeps=1,
                      previous_frame=True, motion_radius=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    config = ObjectiveConfig(motion_weight=1.0, action_dropout=0.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(120):  # action 1: the view moves one latent pixel right, action 2: one left
        actions = torch.randint(1, 3, (4, 5, 1, 1), generator=gen)
        frames = [torch.randn(4, 4, 8, 8, generator=gen)]
        for t in range(1, 5):
            step = torch.where(actions[:, t, 0, 0] == 1, 1, -1)
            frames.append(torch.stack([torch.roll(f, int(s), dims=-1) for f, s in zip(frames[-1], step)]))
        loss, logs = diffusion_loss(model, torch.stack(frames, 1), actions, None, None, gen, config)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(logs["motion"]) < 0.5  # started near 2 (random frames, unmoved copy)
    with torch.no_grad():
        for action, tap in ((1, (0, -1)), (2, (0, 1))):  # out[j] = prev[j - 1]: the weight sits one tap left
            emb = model.action_encoder(torch.full((1, 1, 1, 1), action), torch.ones(1, 1, 1, dtype=torch.bool))
            kernel = model.motion.head(emb).view(-1).softmax(-1).view(3, 3)
            assert divmod(int(kernel.argmax()), 3) == (1 + tap[0], 1 + tap[1]) and kernel.max() > 0.5
    with pytest.raises(ValueError, match="motion kernel"):
        plain = build_dit("tiny", latent_channels=4)
        diffusion_loss(plain, torch.randn(1, 2, 4, 4, 4), None, None, None, gen, config)


def test_motion_composite_makes_one_step_samples_follow_the_moved_frame():
    """A world whose view scrolls one latent pixel as the action says: with the composite the one-step estimate
    (t = 1, the simulator's default) takes the kernel's moved frame (mask near 1) and is far closer to the truth
    than the same DiT's without it, after the same 120 steps."""
    from worldsim.models.presets import build_dit
    from worldsim.spaces import space_to_json

    def world(gen, b):
        actions = torch.randint(1, 3, (b, 5, 1, 1), generator=gen)
        frames = [torch.randn(b, 4, 8, 8, generator=gen)]
        for t in range(1, 5):
            step = torch.where(actions[:, t, 0, 0] == 1, 1, -1)
            frames.append(torch.stack([torch.roll(f, int(s), dims=-1) for f, s in zip(frames[-1], step)]))
        return torch.stack(frames, 1), actions

    errors, masks = {}, {}
    for comp in (False, True):
        torch.manual_seed(0)
        model = build_dit("tiny", latent_channels=4, action_space=space_to_json(spaces.Discrete(3)), action_substeps=1,
                          previous_frame=True, motion_radius=1, motion_composite=comp)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        config, gen = ObjectiveConfig(motion_weight=1.0, action_dropout=0.0), torch.Generator().manual_seed(0)
        for _ in range(120):
            loss, _ = diffusion_loss(model, *world(gen, 4), None, None, gen, config)
            opt.zero_grad()
            loss.backward()
            opt.step()
        x0, actions = world(torch.Generator().manual_seed(5), 16)
        t = torch.zeros(16, 5)
        t[:, -1] = 1
        with torch.no_grad():
            x = torch.cat([x0[:, :-1], torch.randn(16, 1, 4, 8, 8, generator=gen)], 1)
            out = model(x, t, actions, torch.ones(16, 5, 1, dtype=torch.bool))
        errors[comp] = float((-out.prediction[:, -1] - x0[:, -1]).pow(2).mean())  # at t = 1, x0 = -v
        masks[comp] = out.composite_mask
    assert masks[False] is None and float(masks[True][:, -1].mean()) > 0.8, masks[True][:, -1].mean()
    assert errors[True] < 0.6 * errors[False], errors


def test_motion_border_fits_the_kernel_on_the_interior_only():
    """The motion term with `motion_border=b` is the moved frame's error on the interior: what the border holds
    (here a column that enters the view, unknowable from the previous frame) does not count."""
    from worldsim.models.presets import build_dit
    from worldsim.spaces import space_to_json

    torch.manual_seed(0)
    model = build_dit("tiny", latent_channels=4, action_space=space_to_json(spaces.Discrete(2)), action_substeps=1,
                      previous_frame=True, motion_radius=1)
    gen = torch.Generator().manual_seed(0)
    x0, actions = torch.randn(2, 3, 4, 8, 8, generator=gen), torch.ones(2, 3, 1, 1, dtype=torch.long)
    terms = {}
    for border in (0, 1, 2):
        config = ObjectiveConfig(motion_weight=1.0, action_dropout=0.0, motion_border=border)
        _, logs = diffusion_loss(model, x0, actions, None, None, torch.Generator().manual_seed(1), config)
        terms[border] = float(logs["motion"])
    with torch.no_grad():
        out = model(x0, torch.zeros(2, 3), actions, torch.ones(2, 3, 1, dtype=torch.bool), None, clean=x0)
        err = (out.motion[:, 1:] - x0[:, 1:]).pow(2)
    for border in (0, 1, 2):
        inner = err[..., border:8 - border, border:8 - border].mean()
        assert terms[border] == pytest.approx(float(inner), rel=1e-5)
    assert len(set(terms.values())) == 3
    with pytest.raises(ValueError, match="motion_border=4 leaves nothing"):
        diffusion_loss(model, x0, actions, None, None, gen, ObjectiveConfig(motion_weight=1.0, motion_border=4))
    with pytest.raises(ValueError, match="motion_border must be >= 0"):
        ObjectiveConfig(motion_border=-1)


def test_agent_weighting_makes_an_error_on_the_agent_cost_more():
    x0 = torch.randn(1, 2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    config = ObjectiveConfig(context_prob=0.0, action_dropout=0.0, agent_weight=9.0, agent_box=[1, 3, 2, 4])
    assert config.agent_box == (1, 3, 2, 4)  # a list from the command line becomes the tuple
    w = pixel_weights(x0, config)
    assert w.shape == (1, 1, 1, 4, 4) and w[0, 0, 0, 1, 2] == 10.0 and w[0, 0, 0, 2, 3] == 10.0
    assert w[0, 0, 0, 0, 2] == 1.0 and w[0, 0, 0, 1, 1] == 1.0 and w.sum() == 16 + 4 * 9
    assert pixel_weights(x0, ObjectiveConfig()) is None
    plain = ObjectiveConfig(context_prob=0.0, action_dropout=0.0)

    def wrong_at(row, col):  # exact except at one latent pixel of every frame
        return _exact_but(x0, row, col)

    def loss(model, cfg):
        return _loss(model, x0, cfg)

    assert loss(wrong_at(1, 2), plain) == pytest.approx(loss(wrong_at(3, 0), plain))
    assert loss(wrong_at(1, 2), config) == pytest.approx(10 * loss(wrong_at(3, 0), config))
    with pytest.raises(ValueError, match="outside the 4 x 4 latents"):
        loss(wrong_at(0, 0), ObjectiveConfig(agent_weight=1.0, agent_box=(0, 5, 0, 1)))
    for bad in ({"agent_weight": -1.0}, {"agent_weight": 1.0}, {"agent_weight": 1.0, "agent_box": (2, 1, 0, 1)},
                {"agent_box": (0, 1, 2)}):
        with pytest.raises(ValueError, match="agent_weight"):
            ObjectiveConfig(**bad)


def test_object_weighting_makes_an_error_on_an_object_cost_more():
    # a plain latent frame (the background) with one latent pixel far from it (a ball)
    x0 = torch.zeros(1, 1, 2, 4, 4)
    x0[0, 0, :, 2, 1] = 3.0
    config = ObjectiveConfig(context_prob=0.0, action_dropout=0.0, object_weight=4.0)
    w = pixel_weights(x0, config)
    assert w[0, 0, 0, 2, 1] == 5.0 and w[0, 0, 0, 0, 0] == 1.0  # distance clipped to 1: weight 1 + 4

    def wrong_at(row, col):  # exact except at one latent pixel of every frame
        return _exact_but(x0, row, col)

    def loss(model, cfg):
        return _loss(model, x0, cfg)

    assert loss(wrong_at(2, 1), config) == pytest.approx(5 * loss(wrong_at(0, 3), config))
    with pytest.raises(ValueError, match="object_weight"):
        ObjectiveConfig(object_weight=float("nan"))


def test_ball_weighting_makes_an_error_on_a_ball_cost_what_its_weight_says():
    x0 = torch.zeros(1, 1, 2, 4, 4)
    balls = torch.ones(1, 1, 1, 4, 4)
    balls[0, 0, 0, 2, 1] = 7.0  # a small ball's latent pixel (weights come from the data: LatentWindowDataset)
    config = ObjectiveConfig(context_prob=0.0, action_dropout=0.0, ball_weight=2.0)

    def loss(row, col, cfg=config, weights=balls):
        return float(diffusion_loss(_exact_but(x0, row, col), x0, None, None, None, torch.Generator().manual_seed(9),
                                    cfg, ball_pixels=weights)[0])

    assert loss(2, 1) == pytest.approx(7 * loss(0, 3))
    plain = ObjectiveConfig(context_prob=0.0, action_dropout=0.0)
    assert loss(2, 1, plain) == pytest.approx(loss(0, 3, plain))  # ball_weight 0: the weights are not read
    with pytest.raises(ValueError, match="ball_weight > 0 needs"):
        loss(2, 1, config, None)
    with pytest.raises(ValueError, match="ball_weight"):
        ObjectiveConfig(ball_weight=-1.0)
