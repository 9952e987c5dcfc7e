"""Poisson deblurring: 5x5 uniform blur, photon-limited data (gain 1/100: ~100 photons at white).

Run: `python demos/demo_poisson_deblur.py [--fast] [--out DIR]` (config: demos/configs/poisson_deblur.yaml).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    return _common.run("poisson_deblur", _common.load("poisson_deblur", fast=args.fast), args)


if __name__ == "__main__":
    main()
