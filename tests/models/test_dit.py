import dataclasses

import pytest
import torch
from gymnasium import spaces

from worldsim.models.dit import DiT, DiTConfig, DiTOutput
from worldsim.models.kv_cache import earlier_latents
from worldsim.models.presets import PRESETS, build_dit, dit_config, parameter_count, preset_table
from worldsim.spaces import space_to_json



C, K, N_ACTIONS = 4, 2, 5


def _model(**overrides) -> DiT:
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


def _inputs(b=2, t=5, h=8, w=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(b, t, C, h, w, generator=g),
        noise_level=torch.rand(b, t, generator=g),
        actions=torch.randint(0, N_ACTIONS, (b, t, K, 1), generator=g),
        action_mask=torch.rand(b, t, K, generator=g) > 0.3,
        frame_index=torch.tensor([0, 5, 17, 18, 19, 20, 21][:t]).repeat(b, 1),
    )


def _frames(inputs, sl):
    return {k: v[:, sl] for k, v in inputs.items()}


def test_adaln_zero_init_predicts_zero():
    model = build_dit("tiny", latent_channels=C)
    out = model(torch.randn(1, 2, C, 4, 4), torch.rand(1, 2))
    assert isinstance(out, DiTOutput) and out.reward is None and out.termination_logit is None
    assert torch.count_nonzero(out.prediction) == 0


@pytest.mark.parametrize("t,h,w", [(1, 4, 4), (3, 8, 6), (2, 6, 10)])
def test_any_resolution_aspect_and_length(t, h, w):
    model = _model()
    out = model(**_inputs(b=2, t=t, h=h, w=w))
    assert out.prediction.shape == (2, t, C, h, w)
    assert out.reward.shape == (2, t) and out.termination_logit.shape == (2, t)
    assert torch.isfinite(out.prediction).all()


@pytest.mark.parametrize("previous_frame", [False, True, "motion", "two", "field", "prior"])
def test_gradients_reach_every_parameter(previous_frame):
    model = _model(previous_frame=previous_frame).train()
    out = model(**_inputs(t=3))
    (out.prediction.square().mean() + out.reward.mean() + out.termination_logit.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("previous_frame", [False, True, "motion", "two", "field", "prior"])
@pytest.mark.parametrize("what", ["x", "noise_level", "actions"])
def test_frame_causality(what, previous_frame):
    model = _model(previous_frame=previous_frame)
    a = _inputs(t=5)
    b = {k: v.clone() for k, v in a.items()}
    b["action_mask"][:, 3] = True
    a["action_mask"][:, 3] = True
    if what == "x":
        b["x"][:, 3] += 1.0
    elif what == "noise_level":
        b["noise_level"][:, 3] = 1 - b["noise_level"][:, 3]
    else:
        b["actions"][:, 3] = (b["actions"][:, 3] + 1) % N_ACTIONS
    out_a, out_b = model(**a), model(**b)
    for field in ("prediction", "reward", "termination_logit"):
        ya, yb = getattr(out_a, field), getattr(out_b, field)
        torch.testing.assert_close(ya[:, :3], yb[:, :3], atol=0, rtol=0)  # the past is untouched, bit for bit
        assert not torch.allclose(ya[:, 3:], yb[:, 3:])  # the changed frame and later ones react


@pytest.mark.parametrize("previous_frame", [False, True, "motion", "two", "field", "prior"])
def test_cache_equals_full_recomputation(previous_frame):
    model = _model(previous_frame=previous_frame)
    inputs = _inputs(t=5)
    full = model(**inputs)
    cache = model.build_cache(**_frames(inputs, slice(0, 3)))
    assert cache.num_frames == 3 and cache.batch_size == 2 and cache.tokens_per_frame == 12
    new = model(**_frames(inputs, slice(3, 5)), cache=cache)
    torch.testing.assert_close(new.prediction, full.prediction[:, 3:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new.reward, full.reward[:, 3:], atol=1e-5, rtol=1e-5)
    # a cache grown frame by frame (as a rollout does) is the same as one built at once
    grown = model.build_cache(**_frames(inputs, slice(0, 1)))
    grown = model.build_cache(**_frames(inputs, slice(1, 3)), cache=grown)
    again = model(**_frames(inputs, slice(3, 5)), cache=grown)
    torch.testing.assert_close(again.prediction, full.prediction[:, 3:], atol=1e-5, rtol=1e-5)
    # return_cache on a denoising pass appends exactly these frames
    extended = model(**_frames(inputs, slice(3, 4)), cache=cache, return_cache=True).cache
    assert extended.num_frames == 4
    torch.testing.assert_close(extended.frame_index, inputs["frame_index"][:, :4])
    last = model(**_frames(inputs, slice(4, 5)), cache=extended)
    torch.testing.assert_close(last.prediction, full.prediction[:, 4:], atol=1e-5, rtol=1e-5)


def _warm_started(base: DiT, new_prefix: str, **overrides) -> DiT:
    """A model with a pathway `base` lacks, warm-started from it: only `new_prefix...` parameters are new, and
    (zero-initialised) they change no prediction."""
    model = build_dit("tiny", latent_channels=C, action_space=space_to_json(spaces.Discrete(N_ACTIONS)),
                      action_substeps=K, reward_head=True, termination_head=True, **overrides).eval()
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert unexpected == [] and missing and all(n.startswith(new_prefix) for n in missing)
    inputs = _inputs(t=4)
    torch.testing.assert_close(model(**inputs).prediction, base(**inputs).prediction, atol=0, rtol=0)
    return model


def test_previous_frame_pathway_starts_as_a_no_op_and_reads_the_newest_cached_frame():
    model = _warm_started(_model(previous_frame=False), "previous_", previous_frame=True)
    inputs = _inputs(t=4)
    with torch.no_grad():
        model.previous_embed.proj.weight.normal_(std=0.2)
    # the first new frame after a cache reads the cache's newest frame: change it, the prediction changes
    cache = model.build_cache(**_frames(inputs, slice(0, 3)))
    other = model.build_cache(**{**_frames(inputs, slice(0, 3)), "x": inputs["x"][:, :3] + torch.eye(3)[2][None, :, None, None, None]})
    a = model(**_frames(inputs, slice(3, 4)), cache=cache).prediction
    b = model(**_frames(inputs, slice(3, 4)), cache=other).prediction
    assert not torch.allclose(a, b)
    # a cache without the frames' latents cannot feed it: a clear error, not a silent zero
    bare = dataclasses.replace(cache, latents=None, noise_level=None)
    with pytest.raises(ValueError, match="holds no latents"):
        model(**_frames(inputs, slice(3, 4)), cache=bare)
    # trimming keeps the latents of the kept frames
    torch.testing.assert_close(cache.select([0, 2]).latents, inputs["x"][:, [0, 2]])


def test_earlier_frame_pathway_starts_as_a_no_op_and_reads_the_two_newest_cached_frames():
    two = _warm_started(_model(previous_frame=True), "earlier_", previous_frames=2)
    inputs = _inputs(t=4)
    with torch.no_grad():
        two.earlier_embed.proj.weight.normal_(std=0.2)
    cache = two.build_cache(**_frames(inputs, slice(0, 3)))
    after = _frames(inputs, slice(3, 4))
    base = two(**after, cache=cache).prediction
    # the new frame reads cached frames 2 (previous) and 1 (earlier), not 0: change only the latents the cache
    # stores (its keys and values stay), and the prediction moves exactly when a read frame changed
    for frame, read in ((0, False), (1, True), (2, True)):
        latents = cache.latents.clone()
        latents[:, frame] += 1.0
        moved = two(**after, cache=dataclasses.replace(cache, latents=latents)).prediction
        assert (not torch.allclose(moved, base)) == read, frame
    # a slot-layout cache (frames in no order) reads the same two newest frames by time index
    order = torch.tensor([2, 0, 1])
    shuffled = dataclasses.replace(cache, latents=cache.latents[:, order], noise_level=cache.noise_level[:, order],
                                   frame_index=cache.frame_index[:, order])
    assert torch.equal(earlier_latents(after["x"], after["noise_level"], shuffled, 1)[0],
                       earlier_latents(after["x"], after["noise_level"], cache, 1)[0])
    with pytest.raises(ValueError, match="previous_frames must be 1 or 2"):
        DiTConfig(latent_channels=C, previous_frame=False, previous_frames=2)


def test_blocks_added_to_a_trained_model_start_as_the_identity():
    """Deepening by warm start (`init_from` with a larger `depth`): the new blocks keep adaLN-Zero's init, whose
    zero gates pass tokens through, so the deeper model predicts exactly what the shallower one did, then trains."""
    shallow = _model(depth=2)
    deep = build_dit("tiny", latent_channels=C, action_space=space_to_json(spaces.Discrete(N_ACTIONS)),
                     action_substeps=K, reward_head=True, termination_head=True, depth=4).eval()
    missing, unexpected = deep.load_state_dict(shallow.state_dict(), strict=False)
    assert unexpected == [] and missing and all(n.startswith(("blocks.2.", "blocks.3.")) for n in missing)
    inputs = _inputs(t=4)
    a, b = deep(**inputs), shallow(**inputs)
    for x, y in ((a.prediction, b.prediction), (a.reward, b.reward), (a.termination_logit, b.termination_logit)):
        torch.testing.assert_close(x, y, atol=0, rtol=0)
    deep.train()
    deep(**inputs).prediction.square().mean().backward()
    gate = deep.blocks[3].adaLN_modulation[-1].weight.grad
    assert gate is not None and gate.abs().sum() > 0  # the new blocks' gates learn from the first step


def test_motion_kernel_starts_near_the_identity_and_moves_the_previous_frame():
    from worldsim.models.dit import MotionKernel

    before = _model(previous_frame=True)
    model = build_dit("tiny", latent_channels=C, action_space=space_to_json(spaces.Discrete(N_ACTIONS)), action_substeps=K,
                      reward_head=True, termination_head=True, previous_frame=True, motion_radius=2).eval()
    missing, unexpected = model.load_state_dict(before.state_dict(), strict=False)
    assert unexpected == [] and missing and all(n.startswith("motion.") for n in missing)
    inputs = _inputs(t=4)
    # a warm start from a model without it predicts nearly what that model did (97% of each kernel on the centre)
    a, b = model(**inputs).prediction, before(**inputs).prediction
    assert (a - b).abs().mean() < 0.05 * b.abs().mean()
    # a kernel whose weight sits one tap right of centre moves every channel one pixel left; zeros come in
    kernel = MotionKernel(dim=8, channels=C, radius=1, groups=1)
    with torch.no_grad():
        kernel.head.weight.zero_()
        kernel.head.bias.copy_(torch.tensor([0, 0, 0, 0, 0, 100.0, 0, 0, 0]))
    previous = torch.randn(2, 3, C, 5, 6)
    moved = kernel(previous, torch.randn(2, 3, 8))
    torch.testing.assert_close(moved[..., :-1], previous[..., 1:])
    assert moved[..., -1].abs().max() < 1e-30
    # the identity start keeps the frame (to 3% of a pixel's weight), and the action chooses the kernel
    kernel.reset_to_identity()
    torch.testing.assert_close(kernel(previous, torch.randn(2, 3, 8)), previous, atol=0.1, rtol=0.05)
    with torch.no_grad():
        kernel.head.weight.normal_()
    cond = torch.randn(2, 3, 8)
    assert not torch.allclose(kernel(previous, cond), kernel(previous, -cond))
    with pytest.raises(ValueError, match="needs previous_frame=True"):
        DiTConfig(latent_channels=C, motion_radius=1)
    with pytest.raises(ValueError, match="dividing latent_channels"):
        DiTConfig(latent_channels=C, previous_frame=True, motion_radius=1, motion_groups=3,
                  action_space=space_to_json(spaces.Discrete(2)))


def test_motion_context_starts_as_the_plain_kernel_then_reads_the_previous_frame():
    from worldsim.models.dit import MotionKernel

    plain = _model(previous_frame="motion")
    aware = _model(previous_frame="motion", motion_context=2)  # same seed: the shared weights are drawn alike
    missing, unexpected = aware.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and missing and all(n.startswith("motion.context_mlp.") for n in missing)
    aware.motion.reset_to_identity()
    plain.motion.reset_to_identity()
    inputs = _inputs(t=4)
    # a warm start from a model without it predicts exactly what that model did (the MLP's output starts at zero)
    torch.testing.assert_close(aware(**inputs).prediction, plain(**inputs).prediction)
    kernel = MotionKernel(dim=8, channels=C, radius=1, groups=1, context=2)
    with torch.no_grad():
        for p in kernel.context_mlp.parameters():
            p.normal_()
    cond, previous = torch.randn(2, 3, 8), torch.randn(2, 3, C, 5, 6)
    # the same action picks different kernels for different previous frames (what they show matters) ...
    assert not torch.allclose(kernel.weights(previous, cond), kernel.weights(2.0 - previous, cond))
    # ... which a kernel without context cannot
    blind = MotionKernel(dim=8, channels=C, radius=1, groups=1)
    torch.testing.assert_close(blind.weights(previous, cond), blind.weights(2.0 - previous, cond))
    with pytest.raises(ValueError, match="motion_context"):
        DiTConfig(latent_channels=C, motion_context=2)


def test_motion_gate_starts_as_the_plain_kernel_and_mixes_it_with_the_identity():
    from worldsim.models.dit import MotionKernel

    plain = _model(previous_frame="motion")
    gated = _model(previous_frame="motion", motion_gate=4)
    missing, unexpected = gated.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and missing and all(n.startswith("motion.gate_") for n in missing)
    gated.motion.reset_to_identity()
    plain.motion.reset_to_identity()
    inputs = _inputs(t=4)
    # a warm start predicts nearly what the ungated model did (the gate starts at p = sigmoid(6) = 0.998)
    a, b = gated(**inputs).prediction, plain(**inputs).prediction
    assert (a - b).abs().mean() < 0.01 * b.abs().mean()
    # an action kernel that shifts one pixel left; the gate's bias decides how much of it is applied
    kernel = MotionKernel(dim=8, channels=C, radius=1, groups=1, gate=4)
    with torch.no_grad():
        kernel.head.weight.zero_()
        kernel.head.bias.copy_(torch.tensor([0, 0, 0, 0, 0, 100.0, 0, 0, 0]))
    previous, cond = torch.randn(2, 3, C, 5, 6), torch.randn(2, 3, 8)
    for bias, p in ((100.0, 1.0), (-100.0, 0.0), (0.0, 0.5)):
        with torch.no_grad():
            kernel.gate_net[-1].weight.zero_()
            kernel.gate_net[-1].bias.fill_(bias)
        shifted = torch.cat([previous[..., 1:], torch.zeros_like(previous[..., :1])], dim=-1)
        torch.testing.assert_close(kernel(previous, cond), p * shifted + (1 - p) * previous)
    # the gate reads what the previous frame shows and the action
    with torch.no_grad():
        for q in kernel.gate_net.parameters():
            q.normal_()
    logit = kernel.gate_logit(previous, cond)
    assert logit.shape == (2, 3)
    assert not torch.allclose(logit, kernel.gate_logit(2.0 - previous, cond))
    assert not torch.allclose(logit, kernel.gate_logit(previous, -cond))
    # with `clean`, the output carries the gate's logit on the clean previous frames, and it is trainable
    gated.train()
    out = gated(**inputs, clean=inputs["x"])
    assert out.motion_gate_logit.shape == (2, 4)
    out.motion_gate_logit.sum().backward()
    assert gated.motion.gate_net[-1].weight.grad.abs().sum() > 0  # its output layer starts at zero, not its inputs
    with pytest.raises(ValueError, match="motion_gate"):
        DiTConfig(latent_channels=C, motion_gate=4)


def _composite_pair(previous_frame: str, **flag):
    """A model and the same weights with a composite added (`flag`), their outputs on the same inputs (the added
    composite's mask is 0.5 everywhere, as a fresh one's) and each frame's previous noise level."""
    plain = _model(previous_frame=previous_frame)
    blended = _model(previous_frame=previous_frame, **flag)
    missing, unexpected = blended.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and missing and all(n.startswith("composite.") for n in missing)
    inputs = _inputs(t=4)
    with torch.no_grad():
        out, base = blended(**inputs), plain(**inputs)
        assert torch.allclose(DiT(blended.config).eval()(**inputs).composite_mask, torch.tensor(0.5))
    level = inputs["noise_level"]
    return plain, blended, inputs, out, base, torch.cat([torch.ones_like(level[:, :1]), level[:, :-1]], dim=1)


def test_motion_composite_blends_the_moved_previous_frame_into_the_clean_estimate():
    from worldsim.diffusion.objective import schedule
    from worldsim.models.dit import composite_v

    g = torch.Generator().manual_seed(0)
    v, x, moved = (torch.randn(2, 3, C, 4, 4, generator=g) for _ in range(3))
    mask = torch.rand(2, 3, 1, 4, 4, generator=g)
    ones, zeros = torch.ones(2, 3), torch.zeros(2, 3)
    torch.testing.assert_close(composite_v(v, x, zeros, moved, zeros, mask), v)  # clean frame: nothing to blend
    torch.testing.assert_close(composite_v(v, x, ones, moved, ones, mask), v)  # previous frame pure noise: nothing
    # at t = 1 (x0 = -v) the estimate becomes (1 - m) x0 + m moved
    torch.testing.assert_close(-composite_v(v, x, ones, moved, zeros, mask), (1 - mask) * -v + mask * moved)
    level, prev = torch.rand(2, 3, generator=g), torch.rand(2, 3, generator=g)
    (alpha, sigma), a_prev = (t[..., None, None, None] for t in schedule(level)), schedule(prev)[0][..., None, None, None]
    w = mask * sigma**2 * a_prev**2
    x0 = alpha * x - sigma * v
    torch.testing.assert_close(alpha * x - sigma * composite_v(v, x, level, moved, prev, mask), (1 - w) * x0 + w * moved)

    # in the DiT: the plain model's prediction composited with its moved previous frame; the mask starts at 0.5
    plain, blended, inputs, out, base, previous_level = _composite_pair("motion", motion_composite=True)
    x_in = inputs["x"]
    with torch.no_grad():
        previous = torch.cat([torch.zeros_like(x_in[:, :1]), x_in[:, :-1]], dim=1)
        cond = plain._action_embedding(inputs["actions"], inputs["action_mask"], 2, 4)
        moved = plain.motion(previous, cond)
    expected = composite_v(base.prediction, x_in, inputs["noise_level"], moved, previous_level, out.composite_mask)
    torch.testing.assert_close(out.prediction, expected)
    assert not torch.allclose(out.prediction, base.prediction)
    with pytest.raises(ValueError, match="motion_composite"):
        DiTConfig(latent_channels=C, motion_composite=True)


def test_cache_trimming_keeps_the_right_frames():
    model = _model()
    inputs = _inputs(t=4)
    cache = model.build_cache(**inputs)
    kept = cache.keep_last(2)
    assert kept.num_frames == 2 and kept.keys[0].shape[2] == 2 * cache.tokens_per_frame
    torch.testing.assert_close(kept.frame_index, inputs["frame_index"][:, 2:])
    torch.testing.assert_close(kept.keys[1], cache.keys[1][:, :, 2 * 12:])
    picked = cache.select([0, 3])
    torch.testing.assert_close(picked.values[0], torch.cat([cache.values[0][:, :, :12], cache.values[0][:, :, 36:]], 2))
    assert cache.keep_last(10).num_frames == 4
    with pytest.raises(ValueError, match="out of range"):
        cache.select([4])
    # the trimmed cache still conditions a new frame (an approximation, so only shapes are checked)
    assert model(**_frames(_inputs(t=1, seed=3), slice(0, 1)), cache=kept).prediction.shape == (2, 1, C, 8, 6)


def test_time_index_sparsity_matters_but_a_constant_shift_does_not():
    model = _model()
    inputs = _inputs(t=4)
    base = model(**inputs).prediction
    dense = model(**{**inputs, "frame_index": torch.arange(4).repeat(2, 1)}).prediction
    shifted = model(**{**inputs, "frame_index": inputs["frame_index"] + 37}).prediction
    assert not torch.allclose(base[:, 1:], dense[:, 1:], atol=1e-3)
    torch.testing.assert_close(shifted, base, atol=1e-4, rtol=1e-4)


def test_no_actions_uses_the_null_embedding():
    model = _model()
    inputs = _inputs(t=3)
    masked = model(**{**inputs, "action_mask": torch.zeros(2, 3, K, dtype=torch.bool)}).prediction
    none = model(**{**inputs, "actions": None, "action_mask": None}).prediction
    torch.testing.assert_close(masked, none)
    free = _model(action_space=None)
    assert free(inputs["x"], inputs["noise_level"]).prediction.shape == inputs["x"].shape


def test_clear_errors():
    model = _model()
    good = _inputs(t=3)
    cases = [
        ({"x": torch.randn(2, 3, C + 1, 8, 6)}, "channels"),
        ({"x": torch.randn(2, 3, C, 7, 6)}, "divisible by the patch size"),
        ({"x": torch.randn(3, C, 8, 6)}, r"\(B, T, C, h, w\)"),
        ({"noise_level": torch.rand(2, 4)}, "noise_level has shape"),
        ({"noise_level": torch.full((2, 3), 1.5)}, r"\[0, 1\]"),
        ({"actions": torch.zeros(2, 3, K, 2, dtype=torch.long)}, "Discrete"),
        ({"actions": torch.zeros(1, 3, K, 1, dtype=torch.long)}, "actions have shape"),
        ({"action_mask": torch.ones(2, 3, K + 1, dtype=torch.bool)}, "action_mask"),
        ({"actions": torch.full((2, 3, K, 1), N_ACTIONS)}, "outside"),
        ({"frame_index": torch.zeros(2, 2, dtype=torch.long)}, "frame_index"),
        ({"frame_index": torch.zeros(2, 3)}, "frame_index"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match=message):
            model(**{**good, **change})
    with pytest.raises(ValueError, match="action-free"):
        _model(action_space=None)(**good)
    cache = model.build_cache(**good)
    with pytest.raises(ValueError, match="batch size"):
        model(**_frames(_inputs(b=1, t=1), slice(0, 1)), cache=cache)
    with pytest.raises(ValueError, match="patches"):
        model(**_frames(_inputs(t=1, h=4, w=4), slice(0, 1)), cache=cache)
    with pytest.raises(ValueError, match="frame_index is required"):
        model(**{**_frames(_inputs(t=1), slice(0, 1)), "frame_index": None}, cache=cache)


def test_config_validation():
    with pytest.raises(ValueError, match="temporal_patch"):
        DiTConfig(temporal_patch=2)
    with pytest.raises(ValueError, match="divisible by 8"):
        DiTConfig(dim=96, heads=8)


def test_presets_registry_and_table():
    assert set(PRESETS) == {"tiny", "small", "base", "large"}
    with pytest.raises(ValueError, match="tiny, small, base, large"):
        dit_config("huge")
    assert dit_config("small", depth=3).depth == 3
    table = preset_table(latent_channels=C)
    assert [r["name"] for r in table] == list(PRESETS)
    counts = [r["parameters"] for r in table]
    assert counts == sorted(counts) and counts[0] < 1_000_000 < counts[-1]
    tiny = build_dit("tiny", latent_channels=C)
    assert table[0]["parameters"] == sum(p.numel() for p in tiny.parameters())
    assert parameter_count(dataclasses.replace(tiny.config, depth=4)) > table[0]["parameters"]


@pytest.mark.parametrize("previous_frame", [False, True, "motion", "field", "prior"])
def test_a_padded_batch_of_different_context_lengths_equals_each_sample_alone(previous_frame):
    from worldsim.models.kv_cache import KVCache, batch_item, cat_batch

    model = _model(previous_frame=previous_frame)
    a, b = _inputs(b=1, t=5, seed=1), _inputs(b=1, t=5, seed=2)
    short, long = model.build_cache(**_frames(a, slice(0, 1))), model.build_cache(**_frames(b, slice(0, 4)))
    batch = cat_batch([short, long])
    assert batch.num_frames == 4 and batch.valid.tolist() == [[False, False, False, True], [True] * 4]
    new = {k: torch.cat([a[k][:, 1:2], b[k][:, 4:5]]) for k in a}
    together = model(**new, cache=batch, return_cache=True)
    alone = [model(**_frames(a, slice(1, 2)), cache=short), model(**_frames(b, slice(4, 5)), cache=long)]
    for j, out in enumerate(alone):
        torch.testing.assert_close(together.prediction[j:j + 1], out.prediction, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(together.reward[j:j + 1], out.reward, atol=1e-5, rtol=1e-5)
    # the padding stays masked in the extended cache, and the per-frame layout round-trips
    assert together.cache.valid[0].tolist() == [False, False, False, True, True]
    rebuilt = KVCache.from_frames(long.frame_entries())
    for x, y in zip(rebuilt.keys + rebuilt.values, long.keys + long.values):
        assert torch.equal(x, y)
    newest = together.cache.newest_entries()[1]
    assert torch.equal(newest["keys"], torch.stack(batch_item(together.cache, 1).keys)[:, 0, :, -12:])


def test_a_cache_with_spare_room_gives_the_concatenated_result_without_concatenating():
    from worldsim.models.kv_cache import KVCache, cat_batch

    model = _model(previous_frame=True)
    a, b = _inputs(b=1, t=5, seed=1), _inputs(b=1, t=5, seed=2)
    short, long = model.build_cache(**_frames(a, slice(0, 2))), model.build_cache(**_frames(b, slice(0, 4)))
    new = {k: torch.cat([a[k][:, 2:3], b[k][:, 4:5]]) for k in a}
    reference = model(**new, cache=cat_batch([short, long]), return_cache=True)
    roomy = KVCache.batch_from_entries([short.frame_entries(), long.frame_entries()], spare=1)
    assert roomy.num_frames == 4 and roomy.keys[0].shape[2] == 5 * 12 and roomy.valid.tolist()[0] == [False, False, True, True]
    for _ in range(2):  # a sampler calls it repeatedly: each call overwrites the room
        out = model(**new, cache=roomy, return_cache=True)
        torch.testing.assert_close(out.prediction, reference.prediction, atol=1e-5, rtol=1e-5)
    for x, y in zip(out.cache.keys, reference.cache.keys):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    assert out.cache.num_frames == 5 and out.cache.spare == 0
    torch.testing.assert_close(out.cache.newest_entries()[1]["keys"], reference.cache.newest_entries()[1]["keys"])
    with pytest.raises(ValueError, match="room for 1 new frames"):
        model(**{k: torch.cat([v, v], dim=1) for k, v in new.items()}, cache=roomy)
    with pytest.raises(ValueError, match="spare room"):
        roomy.select([0])


def test_motion_field_starts_as_a_no_op_and_learns_to_carry_moving_things_on():
    """`motion_field`: added to a trained two-frame DiT it changes nothing at first (its embedding is zero); fitted by
    `objective.field_weight` on a toy world of blobs flying at constant velocities, its moved previous frame lands
    where the blob goes next, far closer than copying the previous frame (the DiT's copy pathway alone)."""
    from worldsim.diffusion.objective import ObjectiveConfig, diffusion_loss

    _warm_started(_model(previous_frame="two"), "field", previous_frames=2, previous_frame=True, motion_field=4)
    torch.manual_seed(0)

    def flights(b: int, t: int = 5, size: int = 12) -> torch.Tensor:
        start, velocity = torch.rand(b, 2) * 4 + 4, torch.randint(-1, 2, (b, 2)).float()
        rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        frames = []
        for i in range(t):
            at = start + velocity * i
            blob = torch.exp(-((rows - at[:, :1, None]) ** 2 + (cols - at[:, 1:, None]) ** 2) / 2.0)
            frames.append(blob[:, None] * torch.tensor([1.0, -1.0, 0.5, 2.0])[None, :, None, None])
        return torch.stack(frames, 1)  # (B, T, C, h, w)

    model = build_dit("tiny", latent_channels=C, action_space=space_to_json(spaces.Discrete(N_ACTIONS)), action_substeps=K,
                      previous_frame=True, previous_frames=2, motion_field=16, motion_field_radius=2)
    objective = ObjectiveConfig(time_sampling="uniform", field_weight=1.0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    no_action = torch.zeros(16, 5, K, 1, dtype=torch.long)
    for _ in range(150):
        loss, logs = diffusion_loss(model, flights(16), no_action, None, None, g, objective)[:2]
        opt.zero_grad()
        loss.backward()
        opt.step()
    held = flights(32)
    with torch.no_grad():
        moved = model(held, torch.zeros(32, 5), no_action[:1].expand(32, -1, -1, -1), None, clean=held).field_motion
    field_error = (moved[:, 2:] - held[:, 2:]).pow(2).mean()
    copy_error = (held[:, 1:-1] - held[:, 2:]).pow(2).mean()
    assert "field" in logs and field_error < 0.3 * copy_error, (field_error, copy_error)
    with pytest.raises(ValueError, match="motion_field"):
        DiTConfig(latent_channels=C, previous_frame=True, motion_field=4)
    with pytest.raises(ValueError, match="field_weight > 0 needs a DiT with a motion field"):
        diffusion_loss(_model(previous_frame="two").train(), held[:2], no_action[:2], None, None, g, objective)


def test_conv_prior_starts_as_a_no_op_and_fits_the_next_frame():
    """`conv_prior`: added to a trained two-frame DiT it changes nothing at first (its embedding is zero) and its guess
    starts as copying the previous frame; `objective.prior_weight` fits the guess to each frame with two before it."""
    from worldsim.diffusion.objective import ObjectiveConfig, diffusion_loss

    prior = _warm_started(_model(previous_frame="two"), "prior", previous_frames=2, previous_frame=True, conv_prior=8)
    inputs = _inputs(t=4)
    x = inputs["x"]
    out = prior(**inputs, clean=x)
    before = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)
    torch.testing.assert_close(out.prior_next, before)  # copying at first
    model = _model(previous_frame="prior").train()
    g = torch.Generator().manual_seed(0)
    loss, logs = diffusion_loss(model, x, inputs["actions"], inputs["action_mask"], None, g,
                                ObjectiveConfig(prior_weight=1.0, action_dropout=0.0))[:2]
    clean = model(x, torch.zeros(2, 4), inputs["actions"], inputs["action_mask"], clean=x).prior_next
    assert "prior" in logs
    torch.testing.assert_close(logs["prior"], (clean[:, 2:] - x[:, 2:]).pow(2).mean(), rtol=1e-5, atol=1e-6)
    loss.backward()
    assert model.prior.out.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="conv_prior"):
        DiTConfig(latent_channels=C, previous_frame=True, conv_prior=8)


def test_prior_with_more_frames_starts_as_before_and_reads_exactly_its_frames():
    """`prior_frames` F > 2: a two-frame prior given more frames guesses as before (only `prior.older` is new, zero),
    reads the F newest frames before each one, from the sequence or the cache alike (by time index), and its clean
    guess (`prior_next`) equals the one it makes on the same frames as context."""
    four = _warm_started(_model(previous_frame="prior"), "prior.older", prior_frames=4, previous_frames=2,
                         previous_frame=True, conv_prior=8)
    with torch.no_grad():
        four.prior.older.weight.normal_(std=0.2)
        four.prior.out.weight.normal_(std=0.2)
    inputs = _inputs(t=7)
    x, clean_level = inputs["x"], torch.zeros(2, 7)
    with torch.no_grad():
        whole = four(**{**inputs, "noise_level": clean_level}, clean=x)
        torch.testing.assert_close(whole.prior_next, whole.prior_guess)
        cache = four.build_cache(**{**_frames(inputs, slice(0, 6)), "noise_level": clean_level[:, :6]})
        last = {**_frames(inputs, slice(6, 7)), "noise_level": clean_level[:, 6:]}
        cached = four(**last, cache=cache).prior_guess
        torch.testing.assert_close(cached, whole.prior_guess[:, 6:], atol=1e-5, rtol=1e-5)
        for frame, read in ((1, False), (2, True), (3, True), (5, True)):  # frame 6 reads 5, 4, 3 and 2
            latents = cache.latents.clone()
            latents[:, frame] += 1.0
            moved = four(**last, cache=dataclasses.replace(cache, latents=latents)).prior_guess
            assert (not torch.allclose(moved, cached)) == read, frame
    with pytest.raises(ValueError, match="prior_frames"):
        DiTConfig(latent_channels=C, previous_frame=True, previous_frames=2, prior_frames=4)
    with pytest.raises(ValueError, match="reads 4 frames"):
        four.prior(x[:, :1], x[:, :1], None)


def test_prior_composite_blends_the_conv_priors_guess_and_a_given_guess_is_reused():
    """`prior_composite`: the conv prior's guess is composited into the prediction as `motion_composite` does the moved
    frame (own mask, 0.5 at first); a forward given `prior_guess` (a clean pass after denoising) predicts the same."""
    from worldsim.models.dit import composite_v

    _, blended, inputs, out, base, previous_level = _composite_pair("prior", prior_composite=True)
    expected = composite_v(base.prediction, inputs["x"], inputs["noise_level"], base.prior_guess, previous_level,
                           out.composite_mask)
    torch.testing.assert_close(out.prediction, expected)
    assert not torch.allclose(out.prediction, base.prediction)
    with torch.no_grad():
        again = blended(**inputs, prior_guess=out.prior_guess)
        other = blended(**inputs, prior_guess=torch.zeros_like(out.prior_guess))  # the given guess is what it reads
    torch.testing.assert_close(again.prediction, out.prediction)
    assert not torch.allclose(other.prediction, out.prediction)
    with pytest.raises(ValueError, match="prior_composite"):
        DiTConfig(latent_channels=C, prior_composite=True)
