"""``pnp-imaging analyze ANALYSIS ...``: the analyses' command-line arguments and runners.

Each analysis is one entry of :data:`ANALYSES`: ``name -> (help, add_arguments, run)``, where
``add_arguments(parser)`` declares its options (argparse only: keep heavy imports out of it, the
parser is built for every command) and ``run(args) -> exit code`` imports and runs the analysis.
Adding an analysis is two functions and one entry. ``--json`` output is one JSON object on
stdout and nothing else; progress goes to stderr. ``ValueError``/``FileNotFoundError`` become
one-line errors with exit code 2.
"""
from __future__ import annotations

import json
import math
import sys

__all__ = ["ANALYSES", "add_analyze_parser", "run_analyze"]

EXIT_CONFIG = 2


def _log(message: str) -> None:
    print(f"pnp-imaging analyze: {message}", file=sys.stderr, flush=True)


def _json_ready(value):
    """NaN/inf -> None (JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _regimes_arguments(p) -> None:
    p.add_argument("data", help="folder of images (read on the [0, 1] scale) or .npy of shape (n,H,W), (n,C,H,W) or (n,d)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    p.add_argument("--out", default=None, help="folder for regimes.json, figures and report.html")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply the data by this factor first (e.g. 2 to match [-1, 1] training data; default 1: as given)")
    p.add_argument("--t-max", type=float, default=4.0, help="largest OU time of the excess-entropy curve (default 4)")
    p.add_argument("--n-times", type=int, default=50, help="number of times on the curve (default 50)")
    p.add_argument("--n-samples", type=int, default=1000, help="Monte Carlo draws per time (default 1000)")
    p.add_argument("--threshold", type=float, default=0.05, help="t_C = last t with f^e/alpha below this (default 0.05)")
    p.add_argument("--seed", type=int, default=0)


def _run_regimes(args) -> int:
    import torch

    from pnp_imaging.analyses.regimes import default_times, load_dataset, regimes_summary

    if not (math.isfinite(args.scale) and args.scale > 0):
        raise ValueError(f"--scale: must be a finite number > 0, got {args.scale}")
    if not (math.isfinite(args.t_max) and args.t_max > 0) or args.n_times < 2:
        raise ValueError("--t-max must be > 0 and --n-times >= 2")
    data = load_dataset(args.data) * args.scale
    _log(f"{data.shape[0]} samples of dimension {data.shape[1]} from {args.data}; excess entropy at {args.n_times} times")
    summary = regimes_summary(data, times=default_times(args.t_max, args.n_times), n_samples=args.n_samples,
                              threshold=args.threshold, generator=torch.Generator().manual_seed(args.seed))
    summary = _json_ready({**summary, "scale": args.scale})
    if args.out is not None:
        from pnp_imaging.analyses.report import write_regimes_report

        _log(f"report: {write_regimes_report(summary, args.out, source=str(args.data))}")
    if args.json:
        print(json.dumps(summary))
    else:
        t_c = "not found" if summary["t_C"] is None else f"{summary['t_C']:.4g}" + (" (lower bound)" if summary["censored"] else "")
        print(f"Lambda = {summary['Lambda']:.6g}, t_S = {summary['t_S']:.4g}, t_C = {t_c} (n = {summary['n']}, d = {summary['d']})")
    return 0


def _lipschitz_arguments(p) -> None:
    p.add_argument("model", help="zoo model name (see `pnp-imaging zoo list`)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    p.add_argument("--size", type=int, default=32, help="crop size in pixels (default 32)")
    p.add_argument("--sigma", type=float, default=None,
                   help="noise std on the [0, 1] scale (default 5/255 clipped to the model's range)")
    p.add_argument("--points", type=int, default=4, help="noisy crops where the local constant is measured (default 4)")
    p.add_argument("--iters", type=int, default=20, help="power iterations (default 20)")
    p.add_argument("--separation", type=float, nargs="+", default=None,
                   help="mode separations (l2 distance, [0, 1] scale) for the push-forward bound (default 1 2 4 8)")
    p.add_argument("--certified", action="store_true", help="also a certified upper bound (lipdncnn models; ~30 s)")
    p.add_argument("--seed", type=int, default=0)


def _run_lipschitz(args) -> int:
    import denoisers_zoo

    from pnp_imaging.analyses.lipschitz import DEFAULT_SEPARATIONS, zoo_lipschitz_report

    if args.points < 1 or args.iters < 1:
        raise ValueError("--points and --iters must be >= 1")
    if args.model not in denoisers_zoo.available():
        raise ValueError(f"unknown denoiser {args.model!r}; available: {', '.join(denoisers_zoo.available())}")
    _log(f"power iteration on {args.model} at {args.points} noisy {args.size}x{args.size} crops")
    rep = zoo_lipschitz_report(args.model, size=args.size, sigma=args.sigma, n_points=args.points, n_iter=args.iters,
                               separations=args.separation or DEFAULT_SEPARATIONS, certified=args.certified, seed=args.seed)
    if args.json:
        print(json.dumps(_json_ready(rep)))
        return 0
    print(f"{rep['model']} at sigma = {rep['sigma']:.4g}: Lip(D) >= {rep['lipschitz_denoiser']:.4f}, "
          f"Lip(x - D) >= {rep['lipschitz_residual']:.4f} (max over {rep['n_points']} points; card: {rep['card_lipschitz']})")
    if rep["certified_residual_upper_bound"] is not None:
        print(f"certified: Lip(x - D) <= {rep['certified_residual_upper_bound']:.4f}")
    print("as a one-shot generator of Gaussian noise, between two balanced modes (bound of Salmona et al. 2022):")
    _print_bound_rows(rep["pushforward_bound"], f"at the measured L = {rep['lipschitz_denoiser']:.4g} (a lower bound of Lip(D): "
                      "these hold if Lip(D) equals it)")
    if rep["pushforward_bound_certified"] is not None:
        _print_bound_rows(rep["pushforward_bound_certified"], "guaranteed, at L = 1 + certified Lip(x - D)")
    return 0


def _print_bound_rows(rows, title: str) -> None:
    print(f" {title}:")
    for row in rows:
        print(f"  separation {row['separation']:g}: gap mass >= {row['min_gap_mass']:.4f}, TV >= {row['min_tv']:.4f}")


def _cloning_arguments(p) -> None:
    p.add_argument("--out", required=True, help="folder for cloning.json, cloning.png and regimes.json")
    p.add_argument("--n-pairs", type=int, default=400, help="cloned pairs per split time (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true", help="a plumbing run of seconds (the figures mean nothing)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")


def _run_cloning(args) -> int:
    from pnp_imaging.analyses.cloning import run_digits_cloning

    if args.n_pairs < 2:
        raise ValueError(f"--n-pairs must be >= 2, got {args.n_pairs}")
    _log(f"cloning experiment on the digits ({args.n_pairs} pairs per split time) -> {args.out}")
    res = run_digits_cloning(args.out, n_pairs=args.n_pairs, seed=args.seed, fast=args.fast)
    keys = ("t_S", "t_speciation_measured_2_classes", "t_speciation_measured", "t_C", "t_collapse_measured")
    brief = {k: res.get(k) for k in keys}
    if args.json:
        print(json.dumps(_json_ready(brief)))
    else:
        print(", ".join(f"{k} = {'-' if v is None else f'{v:.4g}'}" for k, v in brief.items()))
    return 0


#: analysis name -> (help, add_arguments(parser), run(args) -> exit code)
ANALYSES = {
    "regimes": ("speciation and collapse times of a diffusion model on a data set (Biroli et al. 2024)",
                _regimes_arguments, _run_regimes),
    "lipschitz": ("Lipschitz constant of a zoo model and the push-forward bound it implies (Salmona et al. 2022)",
                  _lipschitz_arguments, _run_lipschitz),
    "cloning": ("the cloning experiment on the digits: measured speciation/collapse vs t_S, t_C (Biroli et al. 2024)",
                _cloning_arguments, _run_cloning),
}


def add_analyze_parser(sub) -> None:
    """Add ``analyze`` and one sub-subcommand per entry of :data:`ANALYSES` to ``sub`` (argparse subparsers)."""
    p = sub.add_parser("analyze", help="analyses of generative priors: " + ", ".join(ANALYSES),
                       description="Analyses of generative priors on your data and models.")
    asub = p.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    for name, (help_text, add_arguments, _) in ANALYSES.items():
        add_arguments(asub.add_parser(name, help=help_text, description=help_text))


def run_analyze(args) -> int:
    """Run the analysis ``args.analysis``; bad input -> one line on stderr, exit code 2."""
    _, _, run = ANALYSES[args.analysis]
    try:
        return run(args)
    except (FileNotFoundError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"pnp-imaging: error: {message}", file=sys.stderr)
        return EXIT_CONFIG
