"""The probe world: balls with gravity, bounces, collisions, occluders and a pusher (numpy only).

Files: `physics` (the simulation), `render` (frames at any size), `occlusion` (geometric
visibility), `scenarios` (named, seeded probe families), `env` (the Gymnasium env).
"""

from worldsim.envs.probe.env import ACTION_NAMES, ProbeWorldEnv
from worldsim.envs.probe.physics import PhysicsConfig
from worldsim.envs.probe.scenarios import FAMILIES, MAX_BALLS, MAX_OCCLUDERS, Scenario, make_scenario

__all__ = [
    "ACTION_NAMES",
    "FAMILIES",
    "MAX_BALLS",
    "MAX_OCCLUDERS",
    "PhysicsConfig",
    "ProbeWorldEnv",
    "Scenario",
    "make_scenario",
]
