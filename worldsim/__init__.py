"""worldsim: a learned world simulator for RL research.

Importing the package registers the Gymnasium environments (cheaply: entry-point strings, no torch):

- ``worldsim/Crafter-v0``, ``worldsim/Probes-v0``: the pretrained simulators shipped in
  `worldsim.pretrained` (work offline);
- ``worldsim/WorldModel-v0``: any exported simulator, ``gymnasium.make("worldsim/WorldModel-v0", checkpoint=EXPORT)``;
- ``worldsim-real/Crafter-v0``, ``worldsim-real/Probe-v0``, ``worldsim-real/MineDojo-v0``: the real worlds (`envs`).
"""

from __future__ import annotations

import envs as _envs  # noqa: F401  (registers worldsim-real/*)
import worldsim.sim as _sim  # noqa: F401  (registers worldsim/WorldModel-v0)
from worldsim.pretrained import register as _register_pretrained

_register_pretrained()

__version__ = "0.1.0"
