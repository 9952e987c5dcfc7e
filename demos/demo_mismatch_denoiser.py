"""Denoiser mismatch: sample with the Lipschitz-controlled DnCNN (the PnP-ULA theory's

Run: `python demos/demo_mismatch_denoiser.py [--fast] [--out DIR]` (config: demos/configs/mismatch_denoiser.yaml).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    return _common.run("mismatch_denoiser", _common.load("mismatch_denoiser", fast=args.fast), args)


if __name__ == "__main__":
    main()
