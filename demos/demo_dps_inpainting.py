"""Inpainting with a diffusion prior (DPS): cameraman, 50% of the pixels missing, sigma_y = 2/255.

Run: `python demos/demo_dps_inpainting.py [--fast] [--out DIR]` (config: demos/configs/dps_inpainting.yaml).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    return _common.run("dps_inpainting", _common.load("dps_inpainting", fast=args.fast), args)


if __name__ == "__main__":
    main()
