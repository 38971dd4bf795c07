"""Record simulator defaults chosen by evaluation in an export: python scripts/set_serving.py EXPORT context_budget=4 reencode=true.

`context_budget=none` removes the entry (the simulator then attends to the context the model trained on).
See `worldsim.export.set_serving`.
"""

import argparse
import sys

from worldsim.export import ExportError, set_serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export")
    parser.add_argument("values", nargs="+", metavar="KEY=VALUE")
    args = parser.parse_args()
    values = {}
    for item in args.values:
        key, sep, raw = item.partition("=")
        if not sep:
            sys.exit(f"set_serving: {item!r} is not KEY=VALUE")
        try:
            bools = {"true": True, "false": False}
            values[key] = None if raw.lower() == "none" else bools[raw.lower()] if key == "reencode" else int(raw)
        except (KeyError, ValueError):
            sys.exit(f"set_serving: {key} must be {'true, false' if key == 'reencode' else 'an integer'} or none, got {raw!r}")
    try:
        print(set_serving(args.export, **values))
    except (ValueError, ExportError, OSError) as e:
        sys.exit(f"set_serving: {e}")


if __name__ == "__main__":
    main()
