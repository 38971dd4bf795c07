"""Export of inference weights: round trip without DeepSpeed, and clear errors for bad folders."""

from __future__ import annotations

import json

import pytest
import torch
from gymnasium import spaces

from worldsim.models.ae_presets import autoencoder_config
from worldsim.models.autoencoder import VideoAutoencoder
from worldsim.models.dit import DiT
from worldsim.models.presets import dit_config
from worldsim.spaces import space_to_json
from worldsim.export import ExportError, load_export, write_export

ACTIONS = space_to_json(spaces.Discrete(3))


def _models(seed: int = 0):
    torch.manual_seed(seed)
    ae = VideoAutoencoder(autoencoder_config("tiny"))
    ae.set_latent_stats(torch.randn(4) * 0.1, torch.rand(4) + 0.5)
    dit = DiT(dit_config("tiny", latent_channels=4, action_space=ACTIONS, action_substeps=2,
                         reward_head=True, termination_head=True))
    for p in dit.parameters():  # adaLN-Zero starts at zero: make the output depend on every weight
        p.data.normal_(0, 0.02)
    return ae, dit


def test_dit_export_round_trip_gives_the_same_outputs(tmp_path):
    ae, dit = _models()
    write_export(tmp_path / "e", ae, dit, (16, 16), ACTIONS, {"window": 5})
    models, meta = load_export(tmp_path / "e")
    assert meta["kind"] == "dit" and meta["compression"] == {"spatial": 4, "temporal": 2}
    assert meta["action_space"] == ACTIONS and meta["frame_size"] == [16, 16] and meta["window"] == 5
    assert torch.equal(models["autoencoder"].latent_scale, ae.latent_scale)
    frames = torch.rand(1, 5, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(models["autoencoder"].encode(frames).mode(), ae.eval().encode(frames).mode())
        x, t = torch.randn(1, 3, 4, 4, 4), torch.rand(1, 3)
        acts = torch.randint(0, 3, (1, 3, 2, 1))
        a, b = models["dit"](x, t, acts), dit.eval()(x, t, acts)
    assert torch.equal(a.prediction, b.prediction) and torch.equal(a.reward, b.reward)


def test_autoencoder_export_needs_fitted_stats(tmp_path):
    ae = VideoAutoencoder(autoencoder_config("tiny"))
    with pytest.raises(ExportError, match="not fitted"):
        write_export(tmp_path / "e", ae, None, (16, 16), None)


def test_missing_truncated_and_foreign_exports_are_named(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        load_export(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="config.json is missing"):
        load_export(tmp_path / "empty")

    ae, dit = _models()
    folder = write_export(tmp_path / "e", ae, dit, (16, 16), ACTIONS)
    weights = folder / "dit.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match="truncated"):
        load_export(folder)
    weights.write_bytes(data)
    load_export(folder)  # intact again

    # Weights from another model (config says depth 3, the file holds depth 2).
    config = json.loads((folder / "config.json").read_text())
    config["dit_config"]["depth"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="another model"):
        load_export(folder)
    # ... or of another width (same names, other shapes): named, not torch's "size mismatch" traceback
    config["dit_config"]["depth"] = dit.config.depth
    config["dit_config"]["dim"] = dit.config.dim * 2
    config["dit_config"]["heads"] = dit.config.heads
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="different models"):
        load_export(folder)
    (folder / "config.json").write_text("{\"format\": ")
    with pytest.raises(ExportError, match="not valid JSON"):
        load_export(folder)


def _edit(folder, change):
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("case, match", [
    ("frame_size", "says frame_size"),
    ("latent_scale_length", "latent_scale"),
    ("action_space", "says action_space"),
    ("autoencoder_from_another_export", "not the one dit.safetensors was exported with"),
])
def test_an_edited_config_or_a_swapped_autoencoder_is_refused(tmp_path, case, match):
    ae, dit = _models()
    folder = write_export(tmp_path / "e", ae, dit, (16, 16), ACTIONS)
    load_export(folder)
    if case == "frame_size":
        _edit(folder, lambda c: c.update(frame_size=[32, 32]))
    elif case == "latent_scale_length":
        _edit(folder, lambda c: c.update(latent_scale=c["latent_scale"][:2]))
    elif case == "action_space":
        _edit(folder, lambda c: c.update(action_space=space_to_json(spaces.Discrete(4))))
    else:  # another export's autoencoder (same architecture), with config.json's size and checksum updated to match
        other_ae, _ = _models(seed=1)
        other = write_export(tmp_path / "other", other_ae, None, (16, 16), ACTIONS)
        (folder / "autoencoder.safetensors").write_bytes((other / "autoencoder.safetensors").read_bytes())
        _edit(folder, lambda c: c.update(latent_shift=json.loads((other / "config.json").read_text())["latent_shift"],
                                         latent_scale=json.loads((other / "config.json").read_text())["latent_scale"],
                                         files={**c["files"], "autoencoder": json.loads((other / "config.json").read_text())["files"]["autoencoder"]}))
    with pytest.raises(ExportError, match=match):
        load_export(folder)


@pytest.mark.parametrize("change, match", [
    (lambda c: c.pop("files"), "lacks 'files'"),
    (lambda c: c.pop("kind"), "lacks 'kind'"),
    (lambda c: c.update(kind="vae"), "has kind 'vae'"),
    (lambda c: c["files"].pop("dit"), "files.dit is null"),
    (lambda c: c["files"]["autoencoder"].pop("sha256"), "files.autoencoder is"),
    ("[]", "a JSON list, not an object"),
])
def test_a_config_json_without_the_entries_loading_needs_is_named(tmp_path, change, match):
    from worldsim.export import read_export_config

    ae, dit = _models()
    folder = write_export(tmp_path / "e", ae, dit, (16, 16), ACTIONS)
    if isinstance(change, str):
        (folder / "config.json").write_text(change)
    else:
        _edit(folder, change)
    for read in (read_export_config, load_export):
        with pytest.raises(ExportError, match=match) as info:
            read(folder)
        assert str(folder / "config.json") in str(info.value)
