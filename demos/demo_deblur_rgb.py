"""Colour deblurring: a 128x128 RGB image, 7x7 Gaussian blur (std 1.5 px), sigma_y = 2/255.

Run: `python demos/demo_deblur_rgb.py [--fast] [--out DIR]` (config: demos/configs/deblur_rgb.yaml).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    return _common.run("deblur_rgb", _common.load("deblur_rgb", fast=args.fast), args)


if __name__ == "__main__":
    main()
