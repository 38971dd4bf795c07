"""The worldsim command: typed configs, clear one-line errors, exit codes."""

import pytest

from worldsim.cli import CLIError, compose, main
from worldsim.config import CollectConfig, EnvConfig


def test_compose_gives_the_typed_dataclass():
    cfg = compose("collect", ["out=/tmp/x.zarr", "env=probe", "episodes=3", "env.kwargs.family=permanence"])
    assert isinstance(cfg, CollectConfig) and isinstance(cfg.env, EnvConfig)
    assert (cfg.env.name, cfg.episodes, cfg.env.kwargs["family"]) == ("probe", 3, "permanence")


@pytest.mark.parametrize(
    "override, words",
    [
        ("episdes=3", ["episdes", "not in"]),
        ("env.sise=3", ["sise", "EnvConfig"]),
        ("episodes=abc", ["abc", "Integer"]),
        ("env=nope", ["env/nope", "crafter", "probe"]),
    ],
)
def test_bad_overrides_fail_at_start_naming_the_key(override, words, capsys):
    assert main(["collect", "out=/tmp/never.zarr", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    for w in words:
        assert w in err


def test_missing_mandatory_value_is_named():
    with pytest.raises(CLIError, match="out"):
        compose("collect", [])


def test_unknown_command_and_help(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("worldsim frobnicate: error: unknown command 'frobnicate'"), err
    assert "collect, import-video" in err  # the commands, not the whole usage
    assert main(["collect", "--help"]) == 0
    out = capsys.readouterr().out
    assert "episodes: 10" in out and "name: crafter" in out


def test_info_on_a_missing_store_is_one_clear_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.zarr")]) == 2
    err = capsys.readouterr().err
    assert "missing.zarr" in err and err.count("\n") == 1


def test_presets_prints_parameter_counts(capsys):
    from worldsim.models.presets import build_dit

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    tiny = sum(p.numel() for p in build_dit("tiny").parameters())
    assert "autoencoder presets" in out and "diffusion transformer presets" in out
    assert f"{tiny / 1e6:.2f}M" in out


def test_version_and_python_dash_m(capsys):
    import subprocess
    import sys

    from worldsim import __version__

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"worldsim {__version__}"
    out = subprocess.run([sys.executable, "-m", "worldsim", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"worldsim {__version__}"


def test_multirun_sweeps_each_job_into_its_own_output(tmp_path, capsys):
    from worldsim.data.store import EpisodeStore

    out = tmp_path / "probe.zarr"
    code = main(["collect", "-m", "env=probe", "episodes=1,2", f"out={out}", "env.max_episode_steps=3", "progress=false"])
    assert code == 0, capsys.readouterr().err
    assert "job 2/2" in capsys.readouterr().out
    for i, episodes in enumerate((1, 2)):
        with EpisodeStore.open(tmp_path / f"probe-{i}.zarr") as store:
            assert store.num_episodes == episodes
    assert not out.exists()
    assert main(["collect", "--multirun", "episodes=1,", f"out={out}"]) == 2  # a malformed sweep: one line


@pytest.mark.parametrize("command,override,words", [
    ("collect", "seed=-5", "seed must be an integer >= 0"),
    ("train", "dist.port=99999", "dist.port must be a TCP port"),
    ("play", "port=99999", "port must be a TCP port"),
    ("rollout", "sim.guidance_scale=nan", "guidance_scale must be finite"),
])
def test_out_of_range_values_are_one_line(command, override, words, tmp_path, capsys):
    args = {"collect": [f"out={tmp_path / 's.zarr'}"], "train": [f"data={tmp_path}", f"vae={tmp_path}"],
            "play": ["checkpoint=probes"], "rollout": ["checkpoint=probes"]}[command]
    assert main([command, *args, override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err


@pytest.mark.parametrize("command,overrides,words", [
    ("collect", ["out="], "out is empty"),
    ("collect", ["env.max_episode_steps=-1"], "env.max_episode_steps must be >= 1"),
    ("import-video", ["DIR", "fps=0"], "fps must be > 0"),
    ("rollout", ["checkpoint=probes", "fps=0"], "fps must be > 0"),
    ("rollout", ["checkpoint=probes", "fps=-1"], "fps must be > 0"),
    ("eval", ["first_seed=-5"], "first_seed must be an integer >= 0"),
    ("eval", ["horizons=[0]"], "horizons must be a non-empty list"),
    ("eval", ["horizons=[]"], "horizons must be a non-empty list"),
    ("eval", ["loop_lengths=[0]"], "loop_lengths must be latent steps >= 1"),
    ("train-vae", ["data=x", "keep_checkpoints=-1"], "keep_checkpoints must be >= 0"),
    ("train-vae", ["data=x", "holdout_episodes=-1"], "holdout_episodes must be null"),
    ("train-vae", ["data=x", "holdout_episodes=-1", "validation.every=0"], "holdout_episodes must be null"),
    ("train-vae", ["data=x", "holdout_episodes=[0,-2]"], "holdout_episodes must be null"),
    ("train-vae", ["data=x", "reappear_state=visible", "reappear_repeat=4"], "reappear_state needs task=dit"),
    ("train", ["data=x", "vae=y", "reappear_repeat=0"], "reappear_repeat must be >= 1"),
    ("train", ["data=x", "vae=y", "reappear_hidden=2"], "reappear_hidden must be >= 0 (> 0 needs reappear_state"),
    ("train", ["data=x", "vae=y", "objective.ball_weight=2", "latent_cache=false"], "objective.ball_weight reads the balls"),
    ("train", ["data=x", "vae=y", "objective.ball_weight=-1"], "ball_weight must be finite and >= 0"),
])
def test_values_out_of_range_are_refused_at_start(command, overrides, words, tmp_path, capsys):
    """Refused while the config is composed: nothing is read, collected or written."""
    args = [a.replace("DIR", str(tmp_path)) for a in overrides]
    if command in ("collect", "import-video") and not any(a.startswith("out=") for a in args):
        args.append(f"out={tmp_path / 's.zarr'}")
    assert main([command, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert list(tmp_path.iterdir()) == []


def test_eval_of_a_missing_or_autoencoder_only_export_is_one_line(tmp_path, capsys):
    from tiny_world_model import tiny_models

    from worldsim.export import write_export

    ae, _ = tiny_models()
    vae = write_export(tmp_path / "vae", ae, None, (16, 16), None)
    for checkpoint, words in ((tmp_path / "nowhere", "does not exist"), (vae, "autoencoder export")):
        assert main(["eval", f"checkpoint={checkpoint}", f"out={tmp_path / 'eval'}", "progress=false"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and str(checkpoint) in err, err


def test_plus_adds_keys_only_inside_free_form_dicts(tmp_path):
    with pytest.raises(CLIError, match="no field 'foo'"):
        compose("collect", [f"out={tmp_path / 'x.zarr'}", "+foo=1"])
    cfg = compose("collect", [f"out={tmp_path / 'x.zarr'}", "env=probe", "+env.kwargs.seed_offset=3"])
    assert cfg.env.kwargs["seed_offset"] == 3
    assert compose("train", ["data=x", "vae=y", "+model_overrides.depth=4"]).model_overrides["depth"] == 4


def test_an_unwritable_output_is_one_line_before_anything_is_collected(capsys):
    import os

    target = "/sys/worldsim-test.zarr" if os.path.isdir("/sys") else "/proc/worldsim-test.zarr"
    assert main(["collect", "env=probe", "episodes=1", f"out={target}", "progress=false"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "output folder you can write to" in err and "Traceback" not in err
