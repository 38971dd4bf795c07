"""The DiT's motion pathways: the motion kernel, its gate and composite, the motion field and the conv prior."""

import dataclasses

import pytest
import torch
from gymnasium import spaces

from worldsim.models.dit import DiT, DiTConfig
from worldsim.models.presets import build_dit
from worldsim.spaces import space_to_json
from dit_helpers import C, K, N_ACTIONS, dit_inputs, frames_of, tiny_dit, warm_started


def test_motion_kernel_starts_near_the_identity_and_moves_the_previous_frame():
    from worldsim.models.dit import MotionKernel

    before = tiny_dit(previous_frame=True)
    model = build_dit("tiny", latent_channels=C, action_space=space_to_json(spaces.Discrete(N_ACTIONS)), action_substeps=K,
                      reward_head=True, termination_head=True, previous_frame=True, motion_radius=2).eval()
    missing, unexpected = model.load_state_dict(before.state_dict(), strict=False)
    assert unexpected == [] and missing and all(n.startswith("motion.") for n in missing)
    inputs = dit_inputs(t=4)
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

    plain = tiny_dit(previous_frame="motion")
    aware = tiny_dit(previous_frame="motion", motion_context=2)  # same seed: the shared weights are drawn alike
    missing, unexpected = aware.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and missing and all(n.startswith("motion.context_mlp.") for n in missing)
    aware.motion.reset_to_identity()
    plain.motion.reset_to_identity()
    inputs = dit_inputs(t=4)
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

    plain = tiny_dit(previous_frame="motion")
    gated = tiny_dit(previous_frame="motion", motion_gate=4)
    missing, unexpected = gated.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and missing and all(n.startswith("motion.gate_") for n in missing)
    gated.motion.reset_to_identity()
    plain.motion.reset_to_identity()
    inputs = dit_inputs(t=4)
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
    plain = tiny_dit(previous_frame=previous_frame)
    blended = tiny_dit(previous_frame=previous_frame, **flag)
    missing, unexpected = blended.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and missing and all(n.startswith("composite.") for n in missing)
    inputs = dit_inputs(t=4)
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


def test_motion_field_starts_as_a_no_op_and_learns_to_carry_moving_things_on():
    """`motion_field`: added to a trained two-frame DiT it changes nothing at first (its embedding is zero); fitted by
    `objective.field_weight` on a toy world of blobs flying at constant velocities, its moved previous frame lands
    where the blob goes next, far closer than copying the previous frame (the DiT's copy pathway alone)."""
    from worldsim.diffusion.objective import ObjectiveConfig, diffusion_loss

    warm_started(tiny_dit(previous_frame="two"), "field", previous_frames=2, previous_frame=True, motion_field=4)
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
        diffusion_loss(tiny_dit(previous_frame="two").train(), held[:2], no_action[:2], None, None, g, objective)


def test_conv_prior_starts_as_a_no_op_and_fits_the_next_frame():
    """`conv_prior`: added to a trained two-frame DiT it changes nothing at first (its embedding is zero) and its guess
    starts as copying the previous frame; `objective.prior_weight` fits the guess to each frame with two before it."""
    from worldsim.diffusion.objective import ObjectiveConfig, diffusion_loss

    prior = warm_started(tiny_dit(previous_frame="two"), "prior", previous_frames=2, previous_frame=True, conv_prior=8)
    inputs = dit_inputs(t=4)
    x = inputs["x"]
    out = prior(**inputs, clean=x)
    before = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)
    torch.testing.assert_close(out.prior_next, before)  # copying at first
    model = tiny_dit(previous_frame="prior").train()
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
    four = warm_started(tiny_dit(previous_frame="prior"), "prior.older", prior_frames=4, previous_frames=2,
                         previous_frame=True, conv_prior=8)
    with torch.no_grad():
        four.prior.older.weight.normal_(std=0.2)
        four.prior.out.weight.normal_(std=0.2)
    inputs = dit_inputs(t=7)
    x, clean_level = inputs["x"], torch.zeros(2, 7)
    with torch.no_grad():
        whole = four(**{**inputs, "noise_level": clean_level}, clean=x)
        torch.testing.assert_close(whole.prior_next, whole.prior_guess)
        cache = four.build_cache(**{**frames_of(inputs, slice(0, 6)), "noise_level": clean_level[:, :6]})
        last = {**frames_of(inputs, slice(6, 7)), "noise_level": clean_level[:, 6:]}
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
