"""The learned simulator as Gymnasium environments, with FDM-style long-range context.

Importing this package registers ``worldsim/WorldModel-v0`` (entry point `WorldModelEnv`, vector
entry point `WorldModelVectorEnv`); heavy modules load only when an env is made.
"""

from __future__ import annotations

import gymnasium as gym

ENV_ID = "worldsim/WorldModel-v0"

if ENV_ID not in gym.registry:
    # No max_episode_steps: the env truncates itself (SimConfig.max_episode_steps), so no TimeLimit wrapper.
    gym.register(id=ENV_ID, entry_point="worldsim.sim.env:WorldModelEnv",
                 vector_entry_point="worldsim.sim.vector_env:WorldModelVectorEnv")

__all__ = ["ENV_ID"]
