"""Kernel mismatch: y simulated with the true kernel (Gaussian std 2.0 px), inference with std 1.5 px.

Run: `python demos/demo_mismatch_kernel.py [--fast] [--out DIR]` (config: demos/configs/mismatch_kernel.yaml).
The observation is simulated first (true operator from the config's ``mismatch.operator``),
then the pipeline runs with the assumed operator and reports ``||A_true - A_assumed||`` and the
data-drift difference on the chain's states.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main(argv=None):
    from operators.registry import build_noise, build_operator
    from pnp_imaging.imageio import read_image, write_image
    from pnp_imaging.problem import Problem

    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    cfg = _common.load("mismatch_kernel", fast=args.fast)
    out = Path(args.out or _common.ROOT / "runs" / "mismatch_kernel")
    x = read_image(_common.CONFIGS / cfg["image"])  # relative to the config file
    g = torch.Generator().manual_seed(cfg["seed"])
    true_op = build_operator(cfg["mismatch"]["operator"], tuple(x.shape), generator=g)
    y = Problem.simulate(x, true_op, build_noise(cfg["noise"]), generator=g).y
    out.parent.mkdir(parents=True, exist_ok=True)
    y_path = out.parent / f"{out.name}_y.npy"
    write_image(y_path, y)
    cfg["observation"] = str(y_path)
    args.out = str(out)
    return _common.run("mismatch_kernel", cfg, args)


if __name__ == "__main__":
    main()
