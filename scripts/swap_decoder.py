"""Put a fine-tuned decoder under a trained DiT: python scripts/swap_decoder.py DIT_EXPORT VAE_EXPORT OUT.

VAE_EXPORT must be a `worldsim train-vae ... freeze_encoder=true` run started from DIT_EXPORT's
autoencoder (same latents); `worldsim.train.warm_start.swap_decoder` refuses anything else.
"""

import argparse
import sys

from worldsim.train.warm_start import swap_decoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dit_export")
    parser.add_argument("vae_export")
    parser.add_argument("out")
    args = parser.parse_args()
    try:
        print(swap_decoder(args.dit_export, args.vae_export, args.out))
    except (ValueError, OSError) as e:
        sys.exit(f"swap_decoder: {e}")


if __name__ == "__main__":
    main()
