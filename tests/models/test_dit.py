import dataclasses

import pytest
import torch
from gymnasium import spaces

from worldsim.models.dit import DiTConfig, DiTOutput
from worldsim.models.kv_cache import earlier_latents
from worldsim.models.presets import PRESETS, build_dit, dit_config, parameter_count, preset_table
from worldsim.spaces import space_to_json
from dit_helpers import C, K, N_ACTIONS, dit_inputs, frames_of, tiny_dit, warm_started


def test_adaln_zero_init_predicts_zero():
    model = build_dit("tiny", latent_channels=C)
    out = model(torch.randn(1, 2, C, 4, 4), torch.rand(1, 2))
    assert isinstance(out, DiTOutput) and out.reward is None and out.termination_logit is None
    assert torch.count_nonzero(out.prediction) == 0


@pytest.mark.parametrize("t,h,w", [(1, 4, 4), (3, 8, 6), (2, 6, 10)])
def test_any_resolution_aspect_and_length(t, h, w):
    model = tiny_dit()
    out = model(**dit_inputs(b=2, t=t, h=h, w=w))
    assert out.prediction.shape == (2, t, C, h, w)
    assert out.reward.shape == (2, t) and out.termination_logit.shape == (2, t)
    assert torch.isfinite(out.prediction).all()


@pytest.mark.parametrize("previous_frame", [False, True, "motion", "two", "field", "prior"])
def test_gradients_reach_every_parameter(previous_frame):
    model = tiny_dit(previous_frame=previous_frame).train()
    out = model(**dit_inputs(t=3))
    (out.prediction.square().mean() + out.reward.mean() + out.termination_logit.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("previous_frame", [False, True, "motion", "two", "field", "prior"])
@pytest.mark.parametrize("what", ["x", "noise_level", "actions"])
def test_frame_causality(what, previous_frame):
    model = tiny_dit(previous_frame=previous_frame)
    a = dit_inputs(t=5)
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
    model = tiny_dit(previous_frame=previous_frame)
    inputs = dit_inputs(t=5)
    full = model(**inputs)
    cache = model.build_cache(**frames_of(inputs, slice(0, 3)))
    assert cache.num_frames == 3 and cache.batch_size == 2 and cache.tokens_per_frame == 12
    new = model(**frames_of(inputs, slice(3, 5)), cache=cache)
    torch.testing.assert_close(new.prediction, full.prediction[:, 3:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new.reward, full.reward[:, 3:], atol=1e-5, rtol=1e-5)
    # a cache grown frame by frame (as a rollout does) is the same as one built at once
    grown = model.build_cache(**frames_of(inputs, slice(0, 1)))
    grown = model.build_cache(**frames_of(inputs, slice(1, 3)), cache=grown)
    again = model(**frames_of(inputs, slice(3, 5)), cache=grown)
    torch.testing.assert_close(again.prediction, full.prediction[:, 3:], atol=1e-5, rtol=1e-5)
    # return_cache on a denoising pass appends exactly these frames
    extended = model(**frames_of(inputs, slice(3, 4)), cache=cache, return_cache=True).cache
    assert extended.num_frames == 4
    torch.testing.assert_close(extended.frame_index, inputs["frame_index"][:, :4])
    last = model(**frames_of(inputs, slice(4, 5)), cache=extended)
    torch.testing.assert_close(last.prediction, full.prediction[:, 4:], atol=1e-5, rtol=1e-5)


def test_previous_frame_pathway_starts_as_a_no_op_and_reads_the_newest_cached_frame():
    model = warm_started(tiny_dit(previous_frame=False), "previous_", previous_frame=True)
    inputs = dit_inputs(t=4)
    with torch.no_grad():
        model.previous_embed.proj.weight.normal_(std=0.2)
    # the first new frame after a cache reads the cache's newest frame: change it, the prediction changes
    cache = model.build_cache(**frames_of(inputs, slice(0, 3)))
    other = model.build_cache(**{**frames_of(inputs, slice(0, 3)), "x": inputs["x"][:, :3] + torch.eye(3)[2][None, :, None, None, None]})
    a = model(**frames_of(inputs, slice(3, 4)), cache=cache).prediction
    b = model(**frames_of(inputs, slice(3, 4)), cache=other).prediction
    assert not torch.allclose(a, b)
    # a cache without the frames' latents cannot feed it: a clear error, not a silent zero
    bare = dataclasses.replace(cache, latents=None, noise_level=None)
    with pytest.raises(ValueError, match="holds no latents"):
        model(**frames_of(inputs, slice(3, 4)), cache=bare)
    # trimming keeps the latents of the kept frames
    torch.testing.assert_close(cache.select([0, 2]).latents, inputs["x"][:, [0, 2]])


def test_earlier_frame_pathway_starts_as_a_no_op_and_reads_the_two_newest_cached_frames():
    two = warm_started(tiny_dit(previous_frame=True), "earlier_", previous_frames=2)
    inputs = dit_inputs(t=4)
    with torch.no_grad():
        two.earlier_embed.proj.weight.normal_(std=0.2)
    cache = two.build_cache(**frames_of(inputs, slice(0, 3)))
    after = frames_of(inputs, slice(3, 4))
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
    shallow = tiny_dit(depth=2)
    deep = build_dit("tiny", latent_channels=C, action_space=space_to_json(spaces.Discrete(N_ACTIONS)),
                     action_substeps=K, reward_head=True, termination_head=True, depth=4).eval()
    missing, unexpected = deep.load_state_dict(shallow.state_dict(), strict=False)
    assert unexpected == [] and missing and all(n.startswith(("blocks.2.", "blocks.3.")) for n in missing)
    inputs = dit_inputs(t=4)
    a, b = deep(**inputs), shallow(**inputs)
    for x, y in ((a.prediction, b.prediction), (a.reward, b.reward), (a.termination_logit, b.termination_logit)):
        torch.testing.assert_close(x, y, atol=0, rtol=0)
    deep.train()
    deep(**inputs).prediction.square().mean().backward()
    gate = deep.blocks[3].adaLN_modulation[-1].weight.grad
    assert gate is not None and gate.abs().sum() > 0  # the new blocks' gates learn from the first step


def test_cache_trimming_keeps_the_right_frames():
    model = tiny_dit()
    inputs = dit_inputs(t=4)
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
    assert model(**frames_of(dit_inputs(t=1, seed=3), slice(0, 1)), cache=kept).prediction.shape == (2, 1, C, 8, 6)


def test_time_index_sparsity_matters_but_a_constant_shift_does_not():
    model = tiny_dit()
    inputs = dit_inputs(t=4)
    base = model(**inputs).prediction
    dense = model(**{**inputs, "frame_index": torch.arange(4).repeat(2, 1)}).prediction
    shifted = model(**{**inputs, "frame_index": inputs["frame_index"] + 37}).prediction
    assert not torch.allclose(base[:, 1:], dense[:, 1:], atol=1e-3)
    torch.testing.assert_close(shifted, base, atol=1e-4, rtol=1e-4)


def test_no_actions_uses_the_null_embedding():
    model = tiny_dit()
    inputs = dit_inputs(t=3)
    masked = model(**{**inputs, "action_mask": torch.zeros(2, 3, K, dtype=torch.bool)}).prediction
    none = model(**{**inputs, "actions": None, "action_mask": None}).prediction
    torch.testing.assert_close(masked, none)
    free = tiny_dit(action_space=None)
    assert free(inputs["x"], inputs["noise_level"]).prediction.shape == inputs["x"].shape


def test_clear_errors():
    model = tiny_dit()
    good = dit_inputs(t=3)
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
        tiny_dit(action_space=None)(**good)
    cache = model.build_cache(**good)
    with pytest.raises(ValueError, match="batch size"):
        model(**frames_of(dit_inputs(b=1, t=1), slice(0, 1)), cache=cache)
    with pytest.raises(ValueError, match="patches"):
        model(**frames_of(dit_inputs(t=1, h=4, w=4), slice(0, 1)), cache=cache)
    with pytest.raises(ValueError, match="frame_index is required"):
        model(**{**frames_of(dit_inputs(t=1), slice(0, 1)), "frame_index": None}, cache=cache)


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

    model = tiny_dit(previous_frame=previous_frame)
    a, b = dit_inputs(b=1, t=5, seed=1), dit_inputs(b=1, t=5, seed=2)
    short, long = model.build_cache(**frames_of(a, slice(0, 1))), model.build_cache(**frames_of(b, slice(0, 4)))
    batch = cat_batch([short, long])
    assert batch.num_frames == 4 and batch.valid.tolist() == [[False, False, False, True], [True] * 4]
    new = {k: torch.cat([a[k][:, 1:2], b[k][:, 4:5]]) for k in a}
    together = model(**new, cache=batch, return_cache=True)
    alone = [model(**frames_of(a, slice(1, 2)), cache=short), model(**frames_of(b, slice(4, 5)), cache=long)]
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

    model = tiny_dit(previous_frame=True)
    a, b = dit_inputs(b=1, t=5, seed=1), dit_inputs(b=1, t=5, seed=2)
    short, long = model.build_cache(**frames_of(a, slice(0, 2))), model.build_cache(**frames_of(b, slice(0, 4)))
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
