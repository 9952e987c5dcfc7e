"""Gray deblurring with a diffusion prior (DPS): cameraman, 9x9 uniform blur, sigma_y = 1/255.

Run: `python demos/demo_dps_deblur.py [--fast] [--out DIR]` (config: demos/configs/dps_deblur.yaml).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    return _common.run("dps_deblur", _common.load("dps_deblur", fast=args.fast), args)


if __name__ == "__main__":
    main()
