"""Make a trained DiT deeper, close to its function: python scripts/grow_depth.py DIT_EXPORT OUT BLOCK...

Each named block (0-based) is followed by a copy of itself, and both halve their residual gates, so the deeper DiT
starts near the trained one with every block trained (`worldsim.train.warm_start.stacked`). Train on from OUT with
init_from=OUT and +model_overrides.depth=NEW_DEPTH.
"""

import argparse
import sys

from worldsim.export import ExportError
from worldsim.train.warm_start import grow_depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dit_export")
    parser.add_argument("out")
    parser.add_argument("blocks", nargs="+", type=int, metavar="BLOCK")
    args = parser.parse_args()
    try:
        print(grow_depth(args.dit_export, args.out, args.blocks))
    except (ValueError, OSError, ExportError) as e:
        sys.exit(f"grow_depth: {e}")


if __name__ == "__main__":
    main()
