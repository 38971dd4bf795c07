"""scripts/swap_prior.py (worldsim.train.warm_start.swap_prior): a refitted conv prior put under a trained DiT."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from worldsim.export import load_export, write_export_like
from worldsim.train.warm_start import swap_prior, with_config

from tiny_world_model import make_export

ROOT = Path(__file__).resolve().parents[2]
PRIOR = {"previous_frames": 2, "conv_prior": 8}


def test_the_prior_comes_from_the_donor_and_every_other_weight_from_the_dit(tmp_path):
    base = make_export(tmp_path / "dit", dit_overrides=PRIOR)
    models, meta = load_export(base)
    with torch.no_grad():  # the donor: the same DiT with its prior refitted (and, to be sure, another weight moved)
        for name, w in models["dit"].named_parameters():
            if name.startswith(("prior.", "final.")):
                w.add_(torch.randn_like(w))
    donor = write_export_like(tmp_path / "donor", models["autoencoder"], models["dit"], meta,
                              conv_prior_fit={"steps": 3})
    run = subprocess.run([sys.executable, "scripts/swap_prior.py", str(base), str(donor), str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    old, new, out = (load_file(p / "dit.safetensors") for p in (base, donor, tmp_path / "out"))
    assert set(out) == set(old)
    prior = [n for n in out if n.startswith("prior.")]
    assert prior and all(torch.equal(out[n], new[n]) and not torch.equal(out[n], old[n]) for n in prior)
    assert all(torch.equal(out[n], old[n]) for n in out if not n.startswith("prior."))
    assert load_export(tmp_path / "out")[1]["prior_from"]["fit"] == {"steps": 3}


def test_a_donor_of_another_width_latents_or_without_a_prior_is_refused(tmp_path):
    base = make_export(tmp_path / "dit", dit_overrides=PRIOR)
    with pytest.raises(ValueError, match="differ in width"):
        swap_prior(base, make_export(tmp_path / "w16", dit_overrides={**PRIOR, "conv_prior": 16}), tmp_path / "a")
    with pytest.raises(ValueError, match="differ in width or heads"):  # a committed prior under a one-head DiT
        swap_prior(base, make_export(tmp_path / "h2", dit_overrides={**PRIOR, "prior_heads": 2}), tmp_path / "a")
    with pytest.raises(ValueError, match="other latents"):
        swap_prior(base, make_export(tmp_path / "s1", seed=1, dit_overrides=PRIOR), tmp_path / "b")
    plain = make_export(tmp_path / "plain", dit_overrides={"previous_frames": 2})
    run = subprocess.run([sys.executable, "scripts/swap_prior.py", str(base), str(plain), str(tmp_path / "c")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "has no DiT with a conv prior" in run.stderr
    assert not any((tmp_path / n).exists() for n in "abc")


def test_a_prior_reading_more_frames_makes_the_dit_read_them(tmp_path):
    """A donor prior of prior_frames=4 under a two-frame DiT: the DiT reads 4 frames and carries the donor's older
    frames' input; the other way round (it would drop that input) is refused."""
    base = make_export(tmp_path / "dit", dit_overrides=PRIOR)
    models, meta = load_export(base)
    four = with_config(models["dit"], prior_frames=4)[0]
    with torch.no_grad():
        four.prior.older.weight.normal_()
    donor = write_export_like(tmp_path / "donor", models["autoencoder"], four, meta)
    swap_prior(base, donor, tmp_path / "out")
    out = load_export(tmp_path / "out")[0]["dit"]
    assert out.config.prior_frames == 4 and torch.equal(out.prior.older.weight, four.prior.older.weight)
    with pytest.raises(ValueError, match="drop or reshape"):
        swap_prior(donor, base, tmp_path / "back")
