import functools

import pytest
import torch
from gymnasium import spaces

from worldsim.diffusion.samplers import sample_euler, sample_heun, time_grid
from worldsim.models.presets import build_dit
from worldsim.spaces import space_to_json


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread is faster than two fighting other processes for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

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


def _gaussian_velocity(mu, s):
    """Exact E[eps - x0 | x_t] when x0 ~ N(mu, s^2) elementwise and x_t = (1 - t) x0 + t eps."""
    def denoiser(x, noise_level, actions, action_mask, frame_index):
        t = noise_level[:, :, None, None, None].double()
        var = (1 - t) ** 2 * s**2 + t**2
        cov = t - (1 - t) * s**2
        return (-mu + cov / var * (x.double() - (1 - t) * mu)).float()
    return denoiser


@pytest.mark.parametrize("sampler", [sample_euler, sample_heun])
def test_exact_velocity_of_a_point_mass_recovers_it(sampler):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))

    def denoiser(x, noise_level, actions, action_mask, frame_index):
        t = noise_level[:, :, None, None, None].clamp(min=1e-12)
        return (x - x0) / t  # v = eps - x0 = (x_t - x0) / t

    steps = [1, 3] if sampler is sample_euler else [1]  # straight paths: one Euler step is exact
    for n in steps:
        out = sampler(denoiser, SHAPE, steps=n, generator=torch.Generator().manual_seed(0), shift=2.0)
        torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)


def test_exact_velocity_of_a_gaussian_maps_noise_to_its_quantile_and_heun_converges_faster():
    mu, s = 1.5, 0.3
    target = mu + s * _initial_noise(0)  # the flow of a Gaussian is the affine map x1 -> mu + s x1
    errors = {}
    for sampler in (sample_euler, sample_heun):
        for n in (2, 4, 8, 16):
            out = sampler(_gaussian_velocity(mu, s), SHAPE, steps=n, generator=torch.Generator().manual_seed(0))
            errors[sampler.__name__, n] = (out - target).abs().max().item()
    for name in ("sample_euler", "sample_heun"):
        assert errors[name, 2] > errors[name, 4] > errors[name, 8] > errors[name, 16]
    assert errors["sample_heun", 16] < 0.03
    assert errors["sample_heun", 8] < errors["sample_euler", 16]
    # observed order of convergence: ~1 for Euler, ~2 for Heun
    assert 1.5 < errors["sample_euler", 8] / errors["sample_euler", 16] < 2.6
    assert errors["sample_heun", 8] / errors["sample_heun", 16] > 3.0


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
    torch.testing.assert_close(out, _initial_noise(0))  # zero velocity: the noise is returned unchanged


def test_classifier_free_guidance_extrapolates_from_unconditional_to_conditional():
    cond, uncond = torch.full(SHAPE, 2.0), torch.full(SHAPE, -1.0)
    actions = torch.zeros(2, 2, 1, 1)
    mask = torch.ones(2, 2, 1, dtype=torch.bool)

    def denoiser(x, noise_level, actions, action_mask, frame_index):
        assert action_mask[:, 0].all()  # the context frame keeps its action
        target = cond if action_mask[:, -1].all() else uncond
        full = torch.cat([torch.zeros_like(x[:, :1]), target], dim=1)
        return (x - full) / noise_level[:, :, None, None, None].clamp(min=1e-12)

    context = torch.zeros(2, 1, 3, 4, 4)
    for w in (1.0, 3.0):
        out = sample_euler(denoiser, SHAPE, steps=1, generator=torch.Generator().manual_seed(0), context=context,
                           actions=actions, action_mask=mask, guidance_scale=w)
        torch.testing.assert_close(out, uncond + w * (cond - uncond))  # CFG on straight paths
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
