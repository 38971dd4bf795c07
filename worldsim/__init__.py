"""worldsim: a learned world simulator for RL research.

Importing the package registers the Gymnasium environments (cheaply: entry-point strings, no torch):

- ``worldsim/Crafter-v0``, ``worldsim/Probes-v0``: the pretrained simulators shipped in
  `worldsim.pretrained` (work offline);
- ``worldsim/WorldModel-v0``: any exported simulator, ``gymnasium.make("worldsim/WorldModel-v0", checkpoint=EXPORT)``;
- ``worldsim-real/Crafter-v0``, ``worldsim-real/Probe-v0``, ``worldsim-real/MineDojo-v0``: the real worlds (`envs`).
"""

from __future__ import annotations

import gymnasium as _gym

from worldsim import envs as _envs  # noqa: F401  (registers worldsim-real/*)
from worldsim.pretrained import register as _register_pretrained

if "worldsim/WorldModel-v0" not in _gym.registry:  # worldsim.sim.ENV_ID; registered here so that the simulator loads lazily
    # No max_episode_steps: the env truncates itself (SimConfig.max_episode_steps), so no TimeLimit wrapper.
    _gym.register(id="worldsim/WorldModel-v0", entry_point="worldsim.sim.env:WorldModelEnv",
                  vector_entry_point="worldsim.sim.vector_env:WorldModelVectorEnv")
_register_pretrained()

__version__ = "0.1.0"
