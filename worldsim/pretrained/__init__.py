"""The pretrained default simulators shipped inside the package, usable offline straight after install.

    import gymnasium, worldsim
    env = gymnasium.make("worldsim/Crafter-v0")   # the learned Crafter simulator
    env = gymnasium.make("worldsim/Probes-v0")    # the learned probe world (balls, gravity, occluders, a pusher)
    env = gymnasium.make("worldsim/ProbePush-v0") # its push task: reward 1 when the target ball rests on the zone

Each model is an ordinary export folder (`worldsim.export`: config.json + safetensors; the DiT
export carries its autoencoder) under ``worldsim/pretrained/<name>/`` with a MODEL_CARD.md saying how it
was trained (scripts/train_pretrained.sh) and how well it does (``worldsim eval``). A reset takes its
context frame from the live real world (``real_env``): Crafter needs the ``crafter`` extra, the probe
world is built in. Keyword arguments of `gymnasium.make` reach `WorldModelEnv` (e.g. ``sampling_steps=2``,
``dataset=STORE`` for context from recorded episodes instead).

Importing this module is cheap (no torch): the envs are registered by entry-point string.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Pretrained:
    """One shipped model: its folder name, Gymnasium id, and the real world it imitates."""

    name: str  # folder under worldsim/pretrained/
    env_id: str  # Gymnasium id registered by `import worldsim`
    real_env: str  # envs.REAL_ENVS short name: where reset() takes its context frame, and what eval compares with
    reward_model: str | None = None  # a frame reward model in the folder (models.frame_heads) used instead of the DiT's heads

    @property
    def path(self) -> Path:
        return ROOT / self.name


PRETRAINED: dict[str, Pretrained] = {
    "crafter": Pretrained("crafter", "worldsim/Crafter-v0", "crafter"),
    "probes": Pretrained("probes", "worldsim/Probes-v0", "probe"),
    # the probe world's push task: Probes-v0 continued on push episodes, its reward read from frames
    "probe-push": Pretrained("probe-push", "worldsim/ProbePush-v0", "probe-push", reward_model="reward_model.safetensors"),
}


class PretrainedError(FileNotFoundError):
    """A shipped model that is unknown or missing from this installation."""


def resolve_checkpoint(checkpoint: str | Path) -> str:
    """An export folder as given, or a shipped model named by its name ("probes") or its id
    ("worldsim/Probes-v0") when no folder of that name exists."""
    text = str(checkpoint)
    if Path(text).exists():
        return text
    by_id = {p.env_id: name for name, p in PRETRAINED.items()}
    if text in PRETRAINED or text in by_id:
        return str(pretrained_path(by_id.get(text, text)))
    return text


def pretrained_path(name: str) -> Path:
    """The export folder of shipped model `name` ("crafter" | "probes"), checked to exist.

    Raises:
        PretrainedError: unknown name, or the folder / its config.json is missing (a broken install:
            package data not included).
    """
    if name not in PRETRAINED:
        raise PretrainedError(f"unknown pretrained model {name!r}; shipped: {', '.join(PRETRAINED)}")
    path = PRETRAINED[name].path
    if not (path / "config.json").is_file():
        raise PretrainedError(f"the pretrained model {name!r} is missing from this installation ({path}/config.json); "
                              "reinstall worldsim (pip install -e .) so its package data is included")
    return path


def register() -> None:
    """Register every shipped model with Gymnasium (idempotent); called by ``import worldsim``."""
    for p in PRETRAINED.values():
        if p.env_id not in gym.registry:
            # No max_episode_steps: the env truncates itself (SimConfig.max_episode_steps), so no TimeLimit wrapper.
            gym.register(id=p.env_id, entry_point="worldsim.sim.env:WorldModelEnv",
                         vector_entry_point="worldsim.sim.vector_env:WorldModelVectorEnv",
                         kwargs={"checkpoint": str(p.path), "real_env": p.real_env,
                                 **({"reward_model": str(p.path / p.reward_model)} if p.reward_model else {})})


__all__ = ["PRETRAINED", "Pretrained", "PretrainedError", "pretrained_path", "register"]
