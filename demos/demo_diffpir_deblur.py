"""Gray deblurring with a diffusion prior (DiffPIR): cameraman, 9x9 uniform blur, sigma_y = 1/255.

Run: `python demos/demo_diffpir_deblur.py [--fast] [--out DIR]` (config: demos/configs/diffpir_deblur.yaml).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def load(fast: bool) -> dict:
    """The config; with ``fast`` the shared --fast budget without its SK-ROCK option and 10 timesteps."""
    from pnp_imaging.config import deep_merge, fast_budget

    cfg = _common.load("diffpir_deblur", fast=False)
    if not fast:
        return cfg
    budget = fast_budget()
    budget["sampler"].pop("stages", None)  # an SK-ROCK option
    budget["sampler"]["diffusion_steps"] = 10
    return deep_merge(cfg, budget)


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    return _common.run("diffpir_deblur", load(args.fast), args)


if __name__ == "__main__":
    main()
