"""Add a pathway to a trained DiT without training: python scripts/add_pathway.py DIT_EXPORT OUT KEY=VALUE...

Each KEY=VALUE changes the DiT's config (`worldsim.models.dit.DiTConfig`; VALUE read as JSON, so `true`, `64`);
the trained weights are kept and the new ones keep their initialisation, which makes an added input a no-op and a
composite's mask 0.5. Probes-v0 phase 5 ships `prior_composite=true` this way: its conv prior's guess and the DiT's
own estimate averaged at t = 1, chosen by `worldsim eval` on two seed sets (README, training section).
"""

import argparse
import json
import sys

from worldsim.export import ExportError
from worldsim.train.warm_start import add_pathway


def value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dit_export")
    parser.add_argument("out")
    parser.add_argument("changes", nargs="+", metavar="KEY=VALUE")
    args = parser.parse_args()
    bad = [c for c in args.changes if "=" not in c]
    if bad:
        sys.exit(f"add_pathway: expected KEY=VALUE, got {bad[0]!r}")
    changes = {k: value(v) for k, v in (c.split("=", 1) for c in args.changes)}
    try:
        print(add_pathway(args.dit_export, args.out, **changes))
    except (ValueError, TypeError, OSError, ExportError) as e:
        sys.exit(f"add_pathway: {e}")


if __name__ == "__main__":
    main()
