"""Conv prior fits beyond the plain one: a committed prior (`DiTConfig.prior_heads`: several guesses of the next latent
and one chosen, fitted winner-takes-all, so that where the next frame is one of a few outcomes the guess is one of
them, not their mean), a change-weighted fit (`--change-weight`), and a widened one (`--widen`)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import make_store

from worldsim.export import load_export
from worldsim.models.dit import DiTConfig
from worldsim.models.motion import ConvPrior
from worldsim.train.latent_cache import build_cache
from worldsim.train.motion_field import field_dit
from worldsim.train.warm_start import widened_prior

from tiny_world_model import make_export

ROOT = Path(__file__).resolve().parents[2]


def _fit(prior: ConvPrior, batch, steps: int = 300) -> None:
    opt = torch.optim.AdamW(prior.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        loss = prior.committed_loss(*batch(g))[0]
        opt.zero_grad()
        loss.backward()
        opt.step()


def _outcomes(cue: bool):
    """Windows whose next frame is the previous one plus s or minus s (s = 1 everywhere), each half the time; with
    `cue` the earlier frame shows which (its first channel is the sign), without it nothing does."""
    def batch(g: torch.Generator):
        previous = torch.randn(32, 1, 4, 8, 8, generator=g)
        sign = torch.randint(0, 2, (32, 1, 1, 1, 1), generator=g).float() * 2 - 1
        earlier = torch.zeros_like(previous)
        if cue:
            earlier[:, :, :1] = sign
        return previous, earlier, None, previous + sign
    return batch


def _distance_to_nearest_outcome(guess: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    return torch.minimum((guess - previous - 1).pow(2).mean(dim=(2, 3, 4)),
                         (guess - previous + 1).pow(2).mean(dim=(2, 3, 4))).mean()


def test_where_nothing_shows_the_outcome_two_heads_commit_and_one_head_averages():
    torch.manual_seed(0)
    one, two = ConvPrior(8, 4, 8), ConvPrior(8, 4, 8, heads=2)
    batch = _outcomes(cue=False)
    _fit(one, batch)
    _fit(two, batch)
    previous, earlier, _, target = batch(torch.Generator().manual_seed(7))
    with torch.no_grad():
        mean, committed = one(previous, earlier, None), two(previous, earlier, None)
        guesses, logits = two.hypotheses(previous, earlier, None)
    assert _distance_to_nearest_outcome(mean, previous) > 0.8  # the mean of +1 and -1: 1 from each
    assert _distance_to_nearest_outcome(committed, previous) < 0.1  # one of them
    heads = (guesses - previous[:, :, None]).mean(dim=(0, 1, 3, 4, 5))  # each head's mean step
    assert sorted(heads.tolist())[0] < -0.8 and sorted(heads.tolist())[1] > 0.8, heads


def test_where_the_frames_show_the_outcome_the_choice_reads_it():
    torch.manual_seed(0)
    two = ConvPrior(8, 4, 8, heads=2)
    batch = _outcomes(cue=True)
    _fit(two, batch)
    loss, parts = two.committed_loss(*batch(torch.Generator().manual_seed(7)))
    assert parts["chosen"] < 0.05 and 0.2 < parts["first"] < 0.8, parts  # the right head, either head half the time


def test_heads_need_a_conv_prior():
    with pytest.raises(ValueError, match="prior_heads"):
        DiTConfig(latent_channels=4, previous_frame=True, previous_frames=2, prior_heads=2)
    with pytest.raises(ValueError, match="prior_heads"):
        DiTConfig(latent_channels=4, previous_frame=True, previous_frames=2, conv_prior=8, prior_heads=0)


@pytest.fixture(scope="module")
def prior_and_store(tmp_path_factory):
    """A tiny DiT export with a one-head conv prior, and a store with its latent cache."""
    tmp = tmp_path_factory.mktemp("prior")
    base = make_export(tmp / "dit", dit_overrides={"previous_frames": 2, "conv_prior": 8})
    store = make_store(tmp / "d.zarr", episodes=20, steps=24)
    build_cache(store, load_export(base)[0]["autoencoder"], progress=False)
    return base, store


def _fit_script(base, store, out, *args):
    return subprocess.run([sys.executable, "scripts/fit_motion_field.py", str(base), str(store), str(out), "--prior",
                           "--width", "8", "--batch", "16", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)


def test_a_change_weighted_prior_fit(prior_and_store, tmp_path):
    """--change-weight: the training error weighs changing latent pixels more; the held-out error stays the plain
    one (step 0 scores as an unweighted fit does), the record keeps the weight; with heads it is refused."""
    base, store = prior_and_store
    runs = {w: _fit_script(base, store, tmp_path / f"w{w}", "--steps", "20", "--eval-every", "20", "--lr", "3e-3",
                           "--change-weight", str(w), "--json", str(tmp_path / f"w{w}.json")) for w in (0, 4)}
    assert all(r.returncode == 0 for r in runs.values()), runs[4].stderr[-2000:]
    plain, weighted = (json.loads((tmp_path / f"w{w}.json").read_text())["curve"] for w in (0, 4))
    assert plain[0]["held_out_prior_mse"] == weighted[0]["held_out_prior_mse"]
    assert weighted[-1]["held_out_prior_mse"] < weighted[0]["held_out_prior_mse"]
    assert plain[-1]["train_prior_mse"] != weighted[-1]["train_prior_mse"]  # another training loss
    assert load_export(tmp_path / "w4")[1]["conv_prior_fit"]["change_weight"] == 4.0
    run = _fit_script(base, store, tmp_path / "x", "--steps", "1", "--heads", "2", "--change-weight", "1")
    assert run.returncode != 0 and "change_weight" in run.stderr and run.stderr.count("\n") == 1, run.stderr


def test_a_committed_prior_fitted_on_cached_latents(prior_and_store, tmp_path):
    """scripts/fit_motion_field.py --heads 2 upgrades a one-head prior (guessing as before at step 0), fits it
    winner-takes-all and records the chosen and the closest head's held-out errors; a fewer-head fit or an
    unrolled one is refused in one line."""
    base, store = prior_and_store
    models, _ = load_export(base)
    one = models["dit"].eval()
    two = field_dit(one, 8, 0, "prior", heads=2).eval()
    assert two.config.prior_heads == 2 and one.config.prior_heads == 1
    previous, earlier = torch.randn(2, 3, 4, 4, 4), torch.randn(2, 3, 4, 4, 4)
    k = one.action_encoder.substeps
    cond = one.action_encoder(torch.zeros(2, 3, k, 1, dtype=torch.long), torch.ones(2, 3, k, dtype=torch.bool))
    with torch.no_grad():
        torch.testing.assert_close(two.prior(previous, earlier, cond), one.prior(previous, earlier, cond))

    def fit(src, out, *args):
        return _fit_script(src, store, out, *args)

    run = fit(base, tmp_path / "h", "--heads", "2", "--steps", "20", "--eval-every", "10", "--lr", "3e-3",
              "--json", str(tmp_path / "h.json"))
    assert run.returncode == 0, run.stderr[-2000:]
    curve = json.loads((tmp_path / "h.json").read_text())["curve"]
    assert [row["step"] for row in curve] == [0, 10, 20]
    assert curve[0]["choice_first"] == 1.0  # the added head and choice change nothing at first
    assert all(row["held_out_prior_oracle_mse"] <= row["held_out_prior_mse"] + 1e-6 for row in curve)
    models, meta = load_export(tmp_path / "h")
    assert models["dit"].config.prior_heads == 2 and meta["conv_prior_fit"]["heads"] == 2
    for args, message in ((["--heads", "1", "--steps", "1"], "has 2 heads"),
                          (["--heads", "2", "--unroll", "2", "--steps", "1"], "heads=2")):
        run = fit(tmp_path / "h", tmp_path / "x", *args)
        assert run.returncode != 0 and message in run.stderr and run.stderr.count("\n") == 1, run.stderr[-2000:]


def test_a_prior_fitted_with_more_frames(prior_and_store, tmp_path):
    """--frames 4 upgrades a two-frame prior (the older frames' input starts at zero, so it guesses as before), fits
    it and records the frames in the export (tests/models/test_dit.py checks a DiT reading them from its cache);
    continuing it with fewer frames than it reads is refused."""
    base, store = prior_and_store
    run = _fit_script(base, store, tmp_path / "f4", "--frames", "4", "--steps", "20", "--eval-every", "20",
                      "--lr", "3e-3", "--json", str(tmp_path / "f4.json"))
    assert run.returncode == 0, run.stderr[-2000:]
    curve = json.loads((tmp_path / "f4.json").read_text())["curve"]
    assert curve[-1]["held_out_prior_mse"] < curve[0]["held_out_prior_mse"]
    models, meta = load_export(tmp_path / "f4")
    assert models["dit"].config.prior_frames == 4 and meta["conv_prior_fit"]["frames"] == 4
    assert models["dit"].prior.older.weight.abs().sum() > 0  # the older frames' input was fitted
    # upgraded, before fitting, it guesses as the two-frame prior whatever the older frames hold
    one = load_export(base)[0]["dit"].eval()
    fresh = field_dit(one, 8, 0, "prior", frames=4).eval()
    previous, earlier, older = torch.randn(1, 1, 4, 4, 4), torch.randn(1, 1, 4, 4, 4), torch.randn(1, 1, 2, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(fresh.prior(previous, earlier, None, older), one.prior(previous, earlier, None))
    run = _fit_script(tmp_path / "f4", store, tmp_path / "back", "--steps", "1")
    assert run.returncode != 0 and "drop trained weights" in run.stderr and run.stderr.count("\n") == 1, run.stderr


def test_a_narrower_prior_distilled_from_the_dits_own(prior_and_store, tmp_path):
    """--width other than the prior's, with --distill: a fresh prior of that width replaces it (every other weight
    kept) and is fitted to the replaced prior's guesses, which it comes closer to as it trains; the curve records
    the replaced prior's own error beside. --distill without another width is refused in one line."""
    base, store = prior_and_store
    fitted = tmp_path / "teacher"  # a teacher that guesses something other than copying
    run = _fit_script(base, store, fitted, "--steps", "30", "--eval-every", "30", "--lr", "3e-3")
    assert run.returncode == 0, run.stderr[-2000:]
    run = subprocess.run([sys.executable, "scripts/fit_motion_field.py", str(fitted), str(store), str(tmp_path / "s"),
                          "--prior", "--width", "16", "--distill", "--batch", "16", "--steps", "40", "--eval-every", "20",
                          "--lr", "3e-3", "--json", str(tmp_path / "s.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    curve = json.loads((tmp_path / "s.json").read_text())["curve"]
    assert curve[-1]["held_out_teacher_mse"] < 0.5 * curve[0]["held_out_teacher_mse"], curve
    assert curve[0]["held_out_teacher_mse"] > 1e-5  # the student starts as copying, the teacher does not copy
    assert len({row["held_out_teacher_prior_mse"] for row in curve}) == 1  # the replaced prior's own error, fixed
    (teacher, _), (student, meta) = load_export(fitted), load_export(tmp_path / "s")
    assert student["dit"].config.conv_prior == 16 and meta["conv_prior_fit"]["distilled_from_width"] == 8
    own = teacher["dit"].state_dict()
    for name, weight in student["dit"].state_dict().items():
        if not name.startswith("prior."):
            torch.testing.assert_close(weight, own[name])
    run = _fit_script(fitted, store, tmp_path / "x", "--steps", "1", "--distill")  # --width 8: the prior's own
    assert run.returncode != 0 and "distill" in run.stderr and run.stderr.count("\n") == 1, run.stderr
    # continued from its own export, the teacher named: it starts where it stopped and trains on
    run = subprocess.run([sys.executable, "scripts/fit_motion_field.py", str(tmp_path / "s"), str(store),
                          str(tmp_path / "s2"), "--prior", "--distill", "--teacher", str(fitted), "--batch", "16",
                          "--steps", "20", "--eval-every", "20", "--lr", "1e-3", "--json", str(tmp_path / "s2.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    more = json.loads((tmp_path / "s2.json").read_text())["curve"]
    assert more[0]["held_out_teacher_mse"] == curve[-1]["held_out_teacher_mse"]
    before, after = (load_export(tmp_path / d)[0]["dit"].prior.state_dict() for d in ("s", "s2"))
    assert any(not torch.equal(before[n], after[n]) for n in before)  # it trained on
    assert load_export(tmp_path / "s2")[1]["conv_prior_fit"]["teacher"] == str(fitted)
    run = _fit_script(tmp_path / "s", store, tmp_path / "x", "--width", "16", "--steps", "1", "--teacher", str(fitted))
    assert run.returncode != 0 and "for --distill" in run.stderr and run.stderr.count("\n") == 1, run.stderr


def test_a_widened_prior_guesses_as_before_and_fits_on(prior_and_store, tmp_path):
    """--widen --width 16 widens an 8-channel prior (Net2WiderNet: channel copies, the weights that read them split
    at random): at step 0 its held-out error is the narrow prior's, every other weight is kept, and it fits on with
    the copies apart. `widened_prior` keeps a committed, four-frame prior's guesses and choice too; widening to a width
    that is not a larger multiple, or with --distill, is refused in one line."""
    base, store = prior_and_store
    fitted = tmp_path / "narrow"  # a prior that guesses something other than copying, so that equality means something
    run = _fit_script(base, store, fitted, "--steps", "30", "--eval-every", "30", "--lr", "3e-3",
                      "--json", str(tmp_path / "narrow.json"))
    assert run.returncode == 0, run.stderr[-2000:]
    narrow = json.loads((tmp_path / "narrow.json").read_text())["curve"][-1]["held_out_prior_mse"]
    run = _fit_script(fitted, store, tmp_path / "wide", "--width", "16", "--widen", "--steps", "20",
                      "--eval-every", "20", "--lr", "3e-3", "--json", str(tmp_path / "wide.json"))
    assert run.returncode == 0, run.stderr[-2000:]
    curve = json.loads((tmp_path / "wide.json").read_text())["curve"]
    assert abs(curve[0]["held_out_prior_mse"] - narrow) < 1e-4, (curve[0], narrow)
    assert curve[-1]["held_out_prior_mse"] < curve[0]["held_out_prior_mse"], curve
    (before, _), (after, meta) = load_export(fitted), load_export(tmp_path / "wide")
    assert after["dit"].config.conv_prior == 16 and meta["conv_prior_fit"]["widened_from_width"] == 8
    own = before["dit"].state_dict()
    for name, weight in after["dit"].state_dict().items():
        if not name.startswith("prior."):
            torch.testing.assert_close(weight, own[name])
    bias = after["dit"].prior.blocks[0].conv1.bias  # the copies of channel 0 start with one bias and learnt apart
    assert abs(float(bias[0].detach() - bias[1].detach())) > 1e-6

    one = field_dit(before["dit"].eval(), 8, 0, "prior", heads=2, frames=4)
    with torch.no_grad():  # make the added head, choice and older frames' input do something
        for p in (one.prior.alt.weight, one.prior.choose.weight, one.prior.older.weight):
            p.normal_(0, 0.1)
    wide = widened_prior(one, 24).eval()
    assert wide.config.conv_prior == 24
    previous, earlier, older = torch.randn(2, 3, 4, 4, 4), torch.randn(2, 3, 4, 4, 4), torch.randn(2, 3, 2, 4, 4, 4)
    cond = torch.randn(2, 3, one.config.dim)
    with torch.no_grad():
        for a, b in zip(one.eval().prior.hypotheses(previous, earlier, cond, older),
                        wide.prior.hypotheses(previous, earlier, cond, older)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for args, message in ((["--width", "12", "--widen"], "larger multiple"), (["--width", "8", "--widen"], "larger"),
                          (["--width", "16", "--widen", "--distill"], "widen")):
        run = _fit_script(fitted, store, tmp_path / "x", "--steps", "1", *args)
        assert run.returncode != 0 and message in run.stderr and run.stderr.count("\n") == 1, run.stderr[-2000:]
