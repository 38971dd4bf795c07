"""World-anchored attention heads (`DiTConfig.world_heads`): positions, warm start, cache, training, serving."""

import numpy as np
import pytest
import torch

from worldsim.models.camera import camera_positions, camera_table, world_rotary
from worldsim.models.dit import DiT, DiTConfig
from worldsim.models.embeddings import patch_positions
from worldsim.models.rotary import Rotary3D

MOVES = [[1, 0, -1], [2, 0, 1], [3, -1, 0], [4, 1, 0]]  # Crafter's: left, right, up, down (the view's origin)
SPACE = {"type": "Discrete", "n": 5, "start": 0}


def models(world_heads=1):
    torch.manual_seed(0)
    kw = dict(latent_channels=4, patch_size=1, dim=32, depth=2, heads=2, action_space=SPACE, action_substeps=2,
              previous_frame=True, qk_norm=False)
    plain = DiT(DiTConfig(**kw))
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.3 * torch.randn_like(p))  # attention far from uniform, so positions matter
    world = DiT(DiTConfig(**kw, world_heads=world_heads, camera_moves=MOVES))
    world.load_state_dict(plain.state_dict())  # no new weights
    return plain.eval(), world.eval()


def test_camera_sums_the_moves_of_each_frames_substeps():
    table = camera_table(MOVES, 5)
    actions = torch.tensor([[[1, 1], [2, 0], [3, 4], [4, 4]]]).float()[..., None]  # (1, 4, k=2, 1)
    mask = torch.tensor([[[False, True], [True, True], [True, True], [True, False]]])
    cam = camera_positions(actions, mask, table)
    assert cam[0].tolist() == [[0, -1], [0, 0], [0, 0], [1, 0]]  # the masked sub-steps do not move it
    with pytest.raises(ValueError, match="camera_moves"):
        camera_table([[7, 0, 1]], 5)


def test_a_place_seen_again_has_the_same_world_position():
    """Frame 0 at camera (0, 0), frame 1 two columns left: its patch (r, c + 2) shows frame 0's (r, c), and the world
    head rotates both alike; the screen head does not."""
    rotary = Rotary3D(16, 10_000.0, 100.0)
    rows, cols = patch_positions(4, 6)
    camera = torch.tensor([[[0.0, 0.0], [0.0, -2.0]]])
    cos, _ = world_rotary(rotary, torch.zeros(1, 2, dtype=torch.long), rows, cols, camera, heads=2, world_heads=1)
    assert cos.shape == (1, 2, 2 * 24, 8)
    r, c = 1, 2
    then, now = r * 6 + c, 24 + r * 6 + c + 2
    torch.testing.assert_close(cos[0, 1, then], cos[0, 1, now])  # world head
    assert not torch.allclose(cos[0, 0, then], cos[0, 0, now])  # screen head


def test_warm_start_is_unchanged_until_the_view_moves():
    plain, world = models()
    x, level = torch.randn(2, 5, 4, 4, 4), torch.rand(2, 5)
    still = torch.tensor([0, 5, 6]).repeat(2, 5, 1)[:, :, :2, None].float() % 5  # actions that do not scroll
    torch.testing.assert_close(world(x, level, still).prediction, plain(x, level, still).prediction)
    moves = torch.randint(1, 5, (2, 5, 2, 1)).float()
    assert (world(x, level, moves).prediction - plain(x, level, moves).prediction).abs().max() > 1e-3
    _, every = models(world_heads=2)
    assert (every(x, level, moves).prediction - world(x, level, moves).prediction).abs().max() > 1e-3


def test_cached_frames_continue_the_camera_exactly():
    _, world = models()
    x, level = torch.randn(2, 6, 4, 4, 4), torch.rand(2, 6)
    actions = torch.randint(0, 5, (2, 6, 2, 1)).float()
    full = world(x, level, actions).prediction
    camera = camera_positions(actions, None, world.camera_table)
    index = torch.arange(6).repeat(2, 1)
    cache = world.build_cache(x[:, :4], level[:, :4], actions[:, :4], None, index[:, :4])
    part = world(x[:, 4:], level[:, 4:], actions[:, 4:], None, index[:, 4:], cache=cache, camera=camera[:, 4:])
    torch.testing.assert_close(part.prediction, full[:, 4:], atol=1e-5, rtol=1e-5)
    shifted = world(x, level, actions, camera=camera + torch.tensor([3.0, -7.0])).prediction
    torch.testing.assert_close(shifted, full, atol=1e-3, rtol=1e-3)  # only relative positions matter (float32 angles)
    with pytest.raises(ValueError, match="camera is required"):
        world(x[:, 4:], level[:, 4:], actions[:, 4:], None, index[:, 4:], cache=cache)


def test_config_refuses_world_heads_it_cannot_place():
    base = dict(dim=32, depth=1, heads=2, action_space=SPACE)
    with pytest.raises(ValueError, match="world_heads"):
        DiTConfig(**base, world_heads=1)  # no camera_moves
    with pytest.raises(ValueError, match="world_heads"):
        DiTConfig(**base, world_heads=3, camera_moves=MOVES)
    with pytest.raises(ValueError, match="world_heads"):
        DiTConfig(**{**base, "action_space": {"type": "Box", "shape": [2], "low": [0, 0], "high": [1, 1],
                                               "dtype": "float32"}}, world_heads=1, camera_moves=MOVES)


def test_the_simulator_carries_the_camera_in_both_cache_modes(tmp_path):
    """Each track's camera follows its actions, and the incremental cache (keys rotated once, when the frame was
    made) gives the frames that re-encoding the selected context every step gives."""
    from tiny_world_model import FRAME, make_export

    from worldsim.sim.env import WorldModelEnv

    export = make_export(tmp_path / "export", dit_overrides={"world_heads": 1, "camera_moves": MOVES})
    kw = dict(sampling_steps=1, context_frames=3, dtype="float32", context="long-range", context_budget=12)
    start = {"frames": np.random.default_rng(0).integers(0, 256, (5, FRAME, FRAME, 3), dtype=np.uint8)}
    frames = {}
    for cache in ("incremental", "recompute"):
        env = WorldModelEnv(export, cache=cache, **kw)
        obs, _ = env.reset(seed=3, options=start)
        out = [env.step(a)[0] for a in [1, 1, 3, 2, 0]]
        frames[cache] = np.stack(out)
        assert env._track.camera.tolist() == [-2.0, -2.0]  # left 4, up 2, right 2 (k = 2 sub-steps a step)
        env.close()
    assert np.abs(frames["incremental"].astype(int) - frames["recompute"].astype(int)).max() <= 1


def test_recalled_patches_are_places_seen_before_but_not_in_the_last_frame():
    from worldsim.models.camera import recalled_patches

    # a 1 x 4 strip of patches: two steps left (the view's origin -1, -2), then two back
    camera = torch.tensor([[[0.0, 0.0], [0.0, -1.0], [0.0, -2.0], [0.0, -1.0], [0.0, 0.0]]])
    got = recalled_patches(camera, 1, 4)[0, :, 0].int().tolist()
    # frame 3 (origin -1) shows places -1..2; place 2 (its last patch) was last seen in frame 1, not in frame 2
    assert got == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]


def test_recall_weight_weighs_the_recalled_pixels_and_needs_a_camera():
    from worldsim.diffusion.objective import ObjectiveConfig, diffusion_loss

    _, world = models()
    x0, actions = torch.randn(2, 5, 4, 4, 4), torch.randint(0, 5, (2, 5, 2, 1)).float()
    camera = camera_positions(actions, None, world.camera_table)
    recalled = torch.zeros(2, 5, 1, 4, 4, dtype=torch.bool)
    recalled[:, 4, :, :, 3] = True
    losses = [diffusion_loss(world, x0, actions, None, None, torch.Generator().manual_seed(0),
                             ObjectiveConfig(recall_weight=w), camera=camera, recalled=recalled)[0] for w in (0.0, 0.0, 5.0)]
    assert losses[0] == losses[1] and losses[2] != losses[0]
    with pytest.raises(ValueError, match="recall_weight"):
        diffusion_loss(world, x0, actions, None, None, torch.Generator(), ObjectiveConfig(recall_weight=1.0))
    with pytest.raises(ValueError, match="recall_weight"):
        ObjectiveConfig(recall_weight=-1.0)


def test_recall_own_weight_fits_the_dits_own_prediction_on_the_recalled_pixels():
    """`objective.recall_own_weight`: with a prior composite, the DiT's prediction before the composite is fitted on the
    recalled pixels of the denoised frames, and its gradient reaches the transformer's output layer even where the
    mask leans wholly on the prior's guess."""
    from worldsim.diffusion.objective import ObjectiveConfig, diffusion_loss

    torch.manual_seed(0)
    dit = DiT(DiTConfig(latent_channels=4, patch_size=1, dim=32, depth=2, heads=2, action_space=SPACE,
                        action_substeps=2, previous_frame=True, previous_frames=2, conv_prior=8, prior_composite=True,
                        qk_norm=False))
    x0, actions = torch.randn(2, 5, 4, 4, 4), torch.randint(0, 5, (2, 5, 2, 1)).float()
    recalled = torch.zeros(2, 5, 1, 4, 4, dtype=torch.bool)
    recalled[:, 4, :, :, 3] = True

    def loss(weight, recalled=recalled):  # the last frame denoised from pure noise after 4 clean ones
        cfg = ObjectiveConfig(recall_own_weight=weight, pure_noise_prob=1.0)
        return diffusion_loss(dit, x0, actions, None, None, torch.Generator().manual_seed(0), cfg, recalled=recalled,
                              context_frames=4)

    (base, _), (weighted, logs) = loss(0.0), loss(2.0)
    assert "recall_own" not in loss(0.0)[1] and float(logs["recall_own"]) > 0
    assert torch.allclose(weighted, base + 2.0 * logs["recall_own"])
    assert float(loss(2.0, torch.zeros_like(recalled))[1]["recall_own"]) == 0.0  # nothing recalled: no term
    with torch.no_grad():  # the mask wholly toward the guess: the composite passes the DiT's output layer nothing
        dit.composite.linear.bias.fill_(30.0)
    for weight, reaches in ((0.0, False), (2.0, True)):
        dit.zero_grad()
        loss(weight)[0].backward()
        assert (dit.final.linear.weight.grad.abs().sum() > 1e-6) == reaches, weight
    plain, _ = models()
    with pytest.raises(ValueError, match="recall_own_weight > 0 needs a DiT that composites"):
        diffusion_loss(plain, x0, actions, None, None, torch.Generator(), ObjectiveConfig(recall_own_weight=1.0),
                       recalled=recalled)
    with pytest.raises(ValueError, match="recall_own_weight"):
        ObjectiveConfig(recall_own_weight=-1.0)
