"""The learned simulator as Gymnasium environments, with FDM-style long-range context.

``worldsim/WorldModel-v0`` (entry point `WorldModelEnv`, vector entry point `WorldModelVectorEnv`) is
registered when `worldsim` is imported; heavy modules load only when an env is made.
"""

from __future__ import annotations

ENV_ID = "worldsim/WorldModel-v0"

__all__ = ["ENV_ID"]
