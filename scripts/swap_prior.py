"""Put a refitted conv prior under a trained DiT: python scripts/swap_prior.py DIT_EXPORT PRIOR_EXPORT OUT.

PRIOR_EXPORT is a `scripts/fit_motion_field.py --prior` export over the same latents with a prior of the same width;
every weight but the prior's (`prior.*`) comes from DIT_EXPORT (`worldsim.train.warm_start.swap_prior`). Probes-v0
phase 6 was made this way: its prior refitted alone on 4,000 episodes, put under the DiT continued meanwhile on them.
"""

import argparse
import sys

from worldsim.export import ExportError
from worldsim.train.warm_start import swap_prior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dit_export")
    parser.add_argument("prior_export")
    parser.add_argument("out")
    args = parser.parse_args()
    try:
        print(swap_prior(args.dit_export, args.prior_export, args.out))
    except (ValueError, OSError, ExportError) as e:
        sys.exit(f"swap_prior: {e}")


if __name__ == "__main__":
    main()
