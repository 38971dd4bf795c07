"""scripts/add_pathway.py (worldsim.train.warm_start.add_pathway): a pathway added to a trained DiT without training."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from worldsim.export import load_export
from worldsim.train.warm_start import add_pathway

from tiny_world_model import make_export

ROOT = Path(__file__).resolve().parents[2]


def test_a_composite_added_keeps_every_trained_weight_and_starts_at_half(tmp_path):
    export = make_export(tmp_path / "prior", dit_overrides={"previous_frames": 2, "conv_prior": 8})
    run = subprocess.run([sys.executable, "scripts/add_pathway.py", str(export), str(tmp_path / "out"),
                          "prior_composite=true"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    models, meta = load_export(tmp_path / "out")
    dit = models["dit"]
    assert dit.config.prior_composite and meta["pathway_added"]["changes"] == {"prior_composite": True}
    before, after = load_file(export / "dit.safetensors"), load_file(tmp_path / "out" / "dit.safetensors")
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert sorted(set(after) - set(before)) == meta["pathway_added"]["new_parameters"]
    assert all(n.startswith("composite.") for n in meta["pathway_added"]["new_parameters"])
    x = torch.randn(1, 3, dit.config.latent_channels, 4, 4)
    with torch.no_grad():
        mask = dit(x, torch.rand(1, 3)).composite_mask
    assert torch.allclose(mask, torch.tensor(0.5))


def test_a_change_that_drops_weights_or_an_unknown_field_is_refused(tmp_path):
    export = make_export(tmp_path / "prior", dit_overrides={"previous_frames": 2, "conv_prior": 8})
    with pytest.raises(ValueError, match="drop or reshape"):
        add_pathway(export, tmp_path / "a", conv_prior=0)
    with pytest.raises(ValueError, match="not DiT config fields"):
        add_pathway(export, tmp_path / "b", prior_compsite=True)
    run = subprocess.run([sys.executable, "scripts/add_pathway.py", str(export), str(tmp_path / "c"), "prior_composite"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "KEY=VALUE" in run.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
