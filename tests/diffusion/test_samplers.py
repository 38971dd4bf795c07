import functools

import pytest
import torch
from gymnasium import spaces

from worldsim.diffusion.objective import schedule
from worldsim.diffusion.samplers import sample_euler, sample_heun, time_grid
from worldsim.models.presets import build_dit
from worldsim.spaces import space_to_json



SHAPE = (2, 1, 3, 4, 4)  # (B, T_new, C, h, w)


def test_time_grid():
    grid = time_grid(4)
    torch.testing.assert_close(grid, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    shifted = time_grid(4, shift=3.0)
    assert shifted[0] == 1 and shifted[-1] == 0 and (shifted.diff() < 0).all() and (shifted[1:-1] > grid[1:-1]).all()
    with pytest.raises(ValueError, match="steps"):
        time_grid(0)


def _initial_noise(seed):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def _ab(noise_level):
    alpha, sigma = schedule(noise_level.double())
    return alpha[:, :, None, None, None], sigma[:, :, None, None, None]


def _v_for_x0(x, noise_level, x0):
    """The v whose clean estimate alpha x - sigma v is x0."""
    alpha, sigma = _ab(noise_level)
    return ((alpha * x.double() - x0) / sigma).float()


def _gaussian_v(mu, s):
    """Exact E[v | x_t] when x0 ~ N(mu, s^2) elementwise, x_t = a x0 + b eps, v = a eps - b x0."""
    def denoiser(x, noise_level, actions, action_mask, frame_index):
        a, b = _ab(noise_level)
        var = a**2 * s**2 + b**2
        cov = a * b * (1 - s**2)
        return (-b * mu + cov / var * (x.double() - a * mu)).float()
    return denoiser


@pytest.mark.parametrize("sampler", [sample_euler, sample_heun])
def test_exact_prediction_for_a_point_mass_recovers_it(sampler):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)).double()

    def denoiser(x, noise_level, actions, action_mask, frame_index):
        return _v_for_x0(x, noise_level, x0)

    for n in (1, 3):  # the clean estimate is exact, so DDIM lands on x0 for any number of steps
        out = sampler(denoiser, SHAPE, steps=n, generator=torch.Generator().manual_seed(0), shift=2.0)
        torch.testing.assert_close(out, x0.float(), atol=1e-5, rtol=1e-5)


def test_exact_prediction_for_a_gaussian_maps_noise_to_its_quantile_and_heun_converges_faster():
    mu, s = 1.5, 0.3
    target = mu + s * _initial_noise(0)  # the flow of a Gaussian is the affine map x1 -> mu + s x1
    errors = {}
    for sampler in (sample_euler, sample_heun):
        for n in (4, 8, 16, 32):
            out = sampler(_gaussian_v(mu, s), SHAPE, steps=n, generator=torch.Generator().manual_seed(0))
            errors[sampler.__name__, n] = (out - target).abs().max().item()
    for name in ("sample_euler", "sample_heun"):
        assert errors[name, 4] > errors[name, 8] > errors[name, 16] > errors[name, 32]
    assert errors["sample_heun", 32] < 0.03
    assert all(errors["sample_heun", n] < errors["sample_euler", n] for n in (8, 16, 32))
    # observed order of convergence: ~1 for Euler (DDIM); Heun faster (its last step is a DDIM step)
    assert 1.6 < errors["sample_euler", 16] / errors["sample_euler", 32] < 2.4
    assert errors["sample_heun", 16] / errors["sample_heun", 32] > 2.5


def test_context_is_passed_clean_and_only_new_frames_are_generated():
    context = torch.randn(2, 2, 3, 4, 4)
    seen = []

    def denoiser(x, noise_level, actions, action_mask, frame_index):
        seen.append((x.clone(), noise_level.clone(), frame_index))
        return torch.zeros_like(x)

    frame_index = torch.tensor([[0, 4, 5]] * 2)
    out = sample_heun(denoiser, SHAPE, steps=2, generator=torch.Generator().manual_seed(0), context=context,
                      frame_index=frame_index, context_noise_level=0.05)
    assert out.shape == SHAPE and len(seen) == 3  # 2 steps, no correction on the last
    for x, level, fi in seen:
        torch.testing.assert_close(x[:, :2], context)
        assert (level[:, :2] == 0.05).all() and fi is frame_index
    assert [lv[0, 2].item() for _, lv, _ in seen] == [1.0, 0.5, 0.5]
    # v = 0 means x0_hat = alpha x. By hand: the predictor gives sigma(.5) x1, the corrector averages
    # x0_hat = 0 (at t = 1) and alpha(.5) sigma(.5) x1, the last DDIM step returns alpha(.5) x:
    # alpha(.5) sigma(.5) (1 + alpha(.5)^2 / 2) x1 = 0.625 x1.
    torch.testing.assert_close(out, 0.625 * _initial_noise(0))


def test_classifier_free_guidance_extrapolates_from_unconditional_to_conditional():
    cond, uncond = torch.full(SHAPE, 2.0), torch.full(SHAPE, -1.0)
    actions = torch.zeros(2, 2, 1, 1)
    mask = torch.ones(2, 2, 1, dtype=torch.bool)

    def denoiser(x, noise_level, actions, action_mask, frame_index):
        assert action_mask[:, 0].all()  # the context frame keeps its action
        target = cond if action_mask[:, -1].all() else uncond
        v = _v_for_x0(x[:, 1:], noise_level[:, 1:], target.double())
        return torch.cat([torch.zeros_like(x[:, :1]), v], dim=1)

    context = torch.zeros(2, 1, 3, 4, 4)
    for w in (1.0, 3.0):
        out = sample_euler(denoiser, SHAPE, steps=1, generator=torch.Generator().manual_seed(0), context=context,
                           actions=actions, action_mask=mask, guidance_scale=w)
        torch.testing.assert_close(out, uncond + w * (cond - uncond))  # one step from t = 1 returns the x0 estimate
    with pytest.raises(ValueError, match="needs actions"):
        sample_euler(denoiser, SHAPE, steps=1, generator=torch.Generator(), guidance_scale=2.0)
    with pytest.raises(ValueError, match="shape"):
        sample_euler(denoiser, SHAPE[1:], steps=1, generator=torch.Generator())


def _tiny_dit():
    torch.manual_seed(0)
    model = build_dit("tiny", latent_channels=3, action_space=space_to_json(spaces.Discrete(4)))
    with torch.no_grad():
        for p in model.parameters():
            if (p == 0).all():
                p.normal_(std=0.2)
    return model.eval()


def test_tiny_dit_sampling_is_seeded_and_the_cache_gives_the_same_samples():
    model = _tiny_dit()
    g = torch.Generator().manual_seed(9)
    context = torch.randn(2, 2, 3, 4, 4, generator=g)
    actions = torch.randint(0, 4, (2, 3, 1, 1), generator=g)
    frame_index = torch.tensor([[0, 3, 4]] * 2)
    kwargs = dict(steps=3, actions=actions, frame_index=frame_index, guidance_scale=2.0)
    with torch.no_grad():
        a = sample_heun(model, SHAPE, generator=torch.Generator().manual_seed(1), context=context, **kwargs)
        b = sample_heun(model, SHAPE, generator=torch.Generator().manual_seed(1), context=context, **kwargs)
        c = sample_heun(model, SHAPE, generator=torch.Generator().manual_seed(2), context=context, **kwargs)
        cache = model.build_cache(context, torch.zeros(2, 2), actions[:, :2], None, frame_index[:, :2])
        cached = sample_heun(functools.partial(model, cache=cache), SHAPE, generator=torch.Generator().manual_seed(1),
                             **{**kwargs, "actions": actions[:, 2:], "frame_index": frame_index[:, 2:]})
    assert a.shape == SHAPE and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert (a - c).abs().mean() > 0.1
    torch.testing.assert_close(cached, a, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sampler", [sample_euler, sample_heun])
def test_given_noise_replaces_the_generator_and_batches_split_exactly(sampler):
    """Per-sample noise from separate generators gives each sample what it gets when sampled alone."""
    denoiser = _gaussian_v(0.3, 0.5)
    one = (1, *SHAPE[1:])
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    alone = [sampler(denoiser, one, steps=3, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    noise = torch.cat([torch.randn(one, generator=g) for g in gens])
    together = sampler(denoiser, noise.shape, steps=3, noise=noise)
    torch.testing.assert_close(together, torch.cat(alone), atol=0, rtol=0)
    with pytest.raises(ValueError, match="exactly one"):
        sampler(denoiser, one, steps=2)
    with pytest.raises(ValueError, match="exactly one"):
        sampler(denoiser, one, steps=2, generator=gens[0], noise=noise[:1])
    with pytest.raises(ValueError, match="noise has shape"):
        sampler(denoiser, one, steps=2, noise=noise)
