"""`python -m worldsim COMMAND ...`: the same as the `worldsim` command."""

import sys

from worldsim.cli import main

sys.exit(main())
