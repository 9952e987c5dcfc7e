"""Inpainting: 50% of the pixels missing at random (seeded), small noise sigma_y = 2/255.

Run: `python demos/demo_inpainting.py [--fast] [--out DIR]` (config: demos/configs/inpainting.yaml).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    return _common.run("inpainting", _common.load("inpainting", fast=args.fast), args)


if __name__ == "__main__":
    main()
