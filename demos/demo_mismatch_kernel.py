"""Kernel sensitivity: sample with the Gaussian blur (std 2.0 px) that made the data, bound and measure the move to std 1.5 px.

Run: `python demos/demo_mismatch_kernel.py [--fast] [--out DIR]` (config: demos/configs/mismatch_kernel.yaml).
The observation is simulated with the config's operator (std 2.0). The mismatch section computes
``||A - A_other||``, the data-drift pseudometric and the TV / MMSE bounds on the chain's states
for a model whose kernel is off by 0.5 px (std 1.5), and ``run_other`` samples that model with
the same seed and start, so the report shows the measured MMSE distance (and the wrong kernel's
PSNR) next to the bound.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    return _common.run("mismatch_kernel", _common.load("mismatch_kernel", fast=args.fast), args)


if __name__ == "__main__":
    main()
