"""Gray deblurring: cameraman, 9x9 uniform blur, sigma_y = 1/255 (the PnP-ULA paper's setting).

Run: `python demos/demo_deblur_gray.py [--fast] [--out DIR]` (config: demos/configs/deblur_gray.yaml).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    return _common.run("deblur_gray", _common.load("deblur_gray", fast=args.fast), args)


if __name__ == "__main__":
    main()
