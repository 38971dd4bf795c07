"""The pixel refiner (worldsim.models.frame_refiner): its start, its file, and how the simulator shows its frames."""

import shutil

import numpy as np
import pytest
import torch

from worldsim.models.frame_heads import FrameHeads, FrameHeadsConfig, save_frame_heads
from worldsim.models.frame_refiner import (
    FrameRefiner,
    FrameRefinerConfig,
    first_shown,
    load_frame_refiner,
    refine_shown,
    save_frame_refiner,
)
from worldsim.pretrained import pretrained_path
from worldsim.sim.config import SimConfig
from worldsim.sim.simulator import Simulator

PALETTE = ((24, 24, 32), (128, 128, 128), (245, 245, 245), (25, 200, 25), (220, 30, 220), (20, 220, 230),
           (230, 25, 25), (245, 220, 20), (40, 80, 255))


def palette_frames(rng, shape):
    return np.asarray(PALETTE, np.uint8)[rng.integers(0, len(PALETTE), shape)]


def perturbed(seed=0, scale=0.05):
    torch.manual_seed(seed)
    net = FrameRefiner(FrameRefinerConfig(PALETTE, 5))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn_like(p))
    return net.eval()


def test_a_fresh_refiner_shows_the_proposal_snapped_to_the_palette():
    rng = np.random.default_rng(0)
    net = FrameRefiner(FrameRefinerConfig(PALETTE, 5))
    hist = torch.from_numpy(palette_frames(rng, (3, 4, 16, 16)))
    exact = torch.from_numpy(palette_frames(rng, (3, 2, 16, 16)))
    acts = torch.tensor([[0], [3], [4]])
    assert torch.equal(net.refine(hist, exact, acts), exact)  # palette frames come back as they are
    off = (exact.int() + torch.from_numpy(rng.integers(-20, 21, exact.shape))).clamp(0, 255).to(torch.uint8)
    assert torch.equal(net.refine(hist, off, acts), exact)  # colours near a palette colour snap to it
    with pytest.raises(ValueError, match="reads 4 frames before the step and 2 proposed"):
        net.refine(hist[:, :3], exact, acts)


def test_the_file_holds_the_refiner_and_refuses_other_files(tmp_path):
    rng = np.random.default_rng(1)
    net = perturbed()
    save_frame_refiner(tmp_path / "r.safetensors", net, {"note": "test"})
    back, extra = load_frame_refiner(tmp_path / "r.safetensors")
    hist, prop = (torch.from_numpy(palette_frames(rng, (2, n, 16, 16))) for n in (4, 2))
    acts = torch.tensor([[1], [2]])
    assert extra == {"note": "test"} and back.cfg == net.cfg
    assert torch.equal(back.refine(hist, prop, acts), net.refine(hist, prop, acts))
    assert not torch.equal(net.refine(hist, prop, acts), FrameRefiner(net.cfg).refine(hist, prop, acts))  # it learned
    save_frame_heads(tmp_path / "heads.safetensors", FrameHeads(FrameHeadsConfig(reward_values=(0.0, 1.0))))
    with pytest.raises(ValueError, match="does not hold a frame refiner"):
        load_frame_refiner(tmp_path / "heads.safetensors")


def test_history_starts_from_the_context_and_moves_on():
    net = FrameRefiner(FrameRefinerConfig(PALETTE, 5))
    frames = np.arange(3)[:, None, None, None] * np.ones((3, 4, 4, 3), np.uint8)
    shown = first_shown(net.cfg.history, frames)
    assert shown.shape == (4, 4, 4, 3) and [int(f[0, 0, 0]) for f in shown] == [0, 0, 1, 2]
    drawn = torch.from_numpy(np.stack([np.full((4, 4, 3), PALETTE[c], np.uint8) for c in (3, 4)]))  # (k, H, W, 3)
    out, moved = refine_shown(net, [shown], drawn[None], None)  # no action: shown as drawn
    assert torch.equal(out[0], drawn) and [int(f[0, 0, 0]) for f in moved[0]] == [1, 2, 25, 220]


@pytest.fixture(scope="module")
def refined_export(tmp_path_factory):
    """A copy of the shipped Probes-v0 with a perturbed refiner beside it."""
    folder = tmp_path_factory.mktemp("refined") / "probes"
    shutil.copytree(pretrained_path("probes"), folder, ignore=shutil.ignore_patterns("refiner.safetensors"))
    save_frame_refiner(folder / "refiner.safetensors", perturbed(seed=3, scale=0.2))
    return folder


def test_the_simulator_shows_refined_frames_and_keeps_its_own_latents(refined_export):
    """With a refiner the frames shown are the refiner's reading of the frames drawn without it, each step given the
    frames shown before; the latents the DiT reads stay its own, so both simulators follow the same trajectory."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    context = palette_frames(rng, (7, 64, 64))
    plain, refined = (Simulator(refined_export, SimConfig(refine=r, dtype="float32")) for r in (False, True))
    assert plain.refiner is None and refined.refiner is not None
    tracks = {s: [s.start(context), s.start(context[2:])] for s in (plain, refined)}
    shown = [first_shown(4, context), first_shown(4, context[2:])]
    changed = 0
    for step in range(3):
        acts = np.array([[step % 5], [(step + 2) % 5]])
        out = {s: s.step(tracks[s], acts, [torch.Generator().manual_seed(i) for i in range(2)]).frames for s in tracks}
        want, shown = refine_shown(refined.refiner, shown, torch.from_numpy(out[plain]), acts)
        np.testing.assert_array_equal(out[refined], want.numpy())
        changed += int((out[refined] != out[plain]).any())
        for a, b in zip(tracks[plain], tracks[refined]):
            assert all(torch.equal(a.latents[i], b.latents[i]) for i in a.latents)
    assert changed == 3  # the perturbed refiner draws something of its own every step


def test_a_refiner_for_another_palette_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "probes"
    shutil.copytree(pretrained_path("probes"), folder, ignore=shutil.ignore_patterns("refiner.safetensors"))
    save_frame_refiner(folder / "refiner.safetensors", FrameRefiner(FrameRefinerConfig(PALETTE[:4], 5)))
    with pytest.raises(ValueError, match="refines 2 frames a step in 4 colours; this export's autoencoder draws 2 in 9"):
        Simulator(folder, SimConfig())
    assert Simulator(folder, SimConfig(refine=False)).refiner is None


def test_probes_v0_shows_its_frames_through_its_refiner():
    import gymnasium as gym

    import worldsim  # noqa: F401  (registers the shipped simulators)

    env = gym.make("worldsim/Probes-v0")
    plain = gym.make("worldsim/Probes-v0", refine=False)
    assert env.unwrapped.sim.refiner is not None and plain.unwrapped.sim.refiner is None
    obs, _ = env.reset(seed=0)
    assert env.step(0)[0].shape == (64, 64, 3)
    env.close(), plain.close()
