"""Average DiT weights: python scripts/weight_soup.py OUT EXPORT EXPORT [EXPORT...].

A "model soup" (Wortsman et al. 2022) of continuations trained from the same parent: every DiT parameter of the
first export, averaged over the exports that have it with the same shape (a head only some have keeps the first
export's value), written as a DiT export with the first export's autoencoder and records (`soup_of` added).
"""

import argparse
import sys

import torch

from worldsim.export import ExportError, load_export, write_export_like


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("exports", nargs="+")
    args = parser.parse_args()
    if len(args.exports) < 2:
        sys.exit("weight_soup: give at least two exports to average")
    try:
        loaded = [load_export(p) for p in args.exports]
    except (ExportError, OSError) as e:
        sys.exit(f"weight_soup: {e}")
    if any("dit" not in models for models, _ in loaded):
        sys.exit("weight_soup: every export must be a DiT export")
    models, meta = loaded[0]
    states = [m["dit"].state_dict() for m, _ in loaded]
    averaged = {}
    for name, value in states[0].items():
        same = [s[name].float() for s in states if name in s and s[name].shape == value.shape]
        averaged[name] = torch.stack(same).mean(0).to(value.dtype) if value.is_floating_point() else value
    models["dit"].load_state_dict(averaged)
    write_export_like(args.out, models["autoencoder"], models["dit"], meta, soup_of=list(args.exports))
    print(f"wrote {args.out}: the mean of {len(args.exports)} DiTs")


if __name__ == "__main__":
    main()
