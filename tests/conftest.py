"""Test-wide settings."""

import torch

# The models under test are tiny: on a 2-core machine one thread is faster than two (thread
# hand-off costs more than the arithmetic) and leaves the other core to subprocesses.
torch.set_num_threads(1)
