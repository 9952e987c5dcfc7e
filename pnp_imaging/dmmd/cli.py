"""``pnp-imaging dmmd train|sample|evaluate`` (argument handling; ``pnp_imaging/cli.py`` delegates here).

Errors in the input exit with code 2 and one line on stderr naming what is wrong and the fix.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]

EXIT_CONFIG = 2


def _flow_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="dmmd_digits", help="shipped model name (default: dmmd_digits)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial particles (default: 0)")
    p.add_argument("--levels", type=int, default=None, help="number of noise levels (default: the model's)")
    p.add_argument("--steps-per-level", type=int, default=None, help="flow steps per level (default: the model's)")
    p.add_argument("--step-size", type=float, default=None, help="flow step size η (default: the model's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parser(sub) -> None:
    """Register the ``dmmd`` command and its subcommands on ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser("dmmd", help="DMMD: MMD gradient-flow generative prior (train, sample, evaluate)")
    dsub = p.add_subparsers(dest="dmmd_command", required=True, metavar="DMMD_COMMAND")
    q = dsub.add_parser("train", help="train the noise-conditional kernel from a YAML recipe (resumable)")
    q.add_argument("recipe", help="e.g. pnp_imaging/dmmd/recipes/dmmd_digits.yaml")
    q.add_argument("--out", default=None, help="run folder (default: training_scratch/<name>)")
    q.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    q.add_argument("--install", action="store_true", help="copy the weights into pnp_imaging/dmmd/weights (manifest)")
    q.add_argument("--quiet", action="store_true")
    q = dsub.add_parser("sample", help="draw images with the shipped model's gradient flow")
    q.add_argument("--n", type=int, default=64, help="number of images (default: 64)")
    q.add_argument("--out", required=True, help="output .npy path: float32 array (n, side, side) in [0, 1]")
    _flow_options(q)
    q = dsub.add_parser("evaluate", help="sample grid, HTML report and digits metrics next to baselines")
    q.add_argument("--n", type=int, default=500, help="number of samples (default: 500)")
    q.add_argument("--out", default="runs/dmmd_eval", help="output folder (default: runs/dmmd_eval)")
    q.add_argument("--compare", action="append", default=[], metavar="NAME=FILE.npy",
                   help="another generator's samples (m, 8, 8) in [0, 1] to evaluate alongside (repeatable)")
    q.add_argument("--record", action="store_true", help="store the numbers in the manifest and regenerate the card")
    _flow_options(q)


def _error(message: str) -> int:
    print(f"pnp-imaging: error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def _train(args) -> int:
    from pnp_imaging.dmmd.recipe import load_recipe
    from pnp_imaging.dmmd.store import install
    from pnp_imaging.dmmd.train import train

    recipe = load_recipe(args.recipe)
    out = Path(args.out or Path("training_scratch") / recipe["name"])
    result = train(recipe, out, resume=args.resume, progress=not args.quiet)
    print(f"{result.steps_done} steps in {result.wall_minutes:.1f} min (stopped by {result.stopped_by}); weights: {result.weights}")
    if args.install:
        print(f"installed: {install(out)}")
    return 0


def _flow_overrides(args) -> dict:
    return {"levels": args.levels, "steps_per_level": args.steps_per_level, "step_size": args.step_size}


def _check_counts(args) -> None:
    for name in ("n", "levels", "steps_per_level"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: must be >= 1, got {value}")
    if args.step_size is not None and not args.step_size > 0:
        raise ValueError(f"--step-size: must be > 0, got {args.step_size}")


def _sample(args) -> int:
    import numpy as np

    from pnp_imaging.dmmd.store import load_model, sample

    out = Path(args.out)
    if out.suffix != ".npy":
        raise ValueError(f"--out: {out} must end in .npy")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out: folder {out.parent} does not exist; create it first")
    images = sample(load_model(args.model), args.n, seed=args.seed, progress=not args.quiet, **_flow_overrides(args))
    np.save(out, images.numpy().astype(np.float32))
    print(out)
    return 0


def _read_compare(specs: list[str]) -> dict:
    import re

    import numpy as np

    sets = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not Path(path).is_file():
            raise ValueError(f"--compare: {spec!r} must be NAME=FILE.npy (NAME of letters, digits, _ . -; "
                             "an existing file)")
        sets[name] = np.load(path)
    return sets


def _evaluate(args) -> int:
    import json

    from pnp_imaging.dmmd.card import record_evaluation
    from pnp_imaging.dmmd.evaluate import evaluate_model, write_report
    from pnp_imaging.dmmd.store import load_model

    compare = _read_compare(args.compare)
    model = load_model(args.model)
    overrides = {k: v for k, v in _flow_overrides(args).items() if v is not None}
    model.flow.update(overrides)
    results, sets = evaluate_model(model, n=args.n, seed=args.seed, compare=compare, progress=not args.quiet)
    settings = {"n": args.n, "seed": args.seed, **model.flow, "compare": dict(c.partition("=")[::2] for c in args.compare)}
    report = write_report(args.out, model, results, sets, settings)
    print(json.dumps({k: {m: v[m] for m in ("frechet_distance", "nn_train_median", "tv_to_train_labels")}
                      for k, v in results.items()}, indent=1))
    if args.record:
        print(f"card: {record_evaluation(model.name, {'settings': settings, 'results': results})}")
    print(report)
    return 0


def run(args) -> int:
    """Dispatch ``args.dmmd_command``; input errors become one line on stderr and exit code 2."""
    commands = {"train": _train, "sample": _sample, "evaluate": _evaluate}
    try:
        if args.dmmd_command != "train":
            _check_counts(args)
        return commands[args.dmmd_command](args)
    except (ValueError, FileNotFoundError) as exc:
        return _error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        print("pnp-imaging: interrupted; a training run continues from its last checkpoint with --resume",
              file=sys.stderr)
        return 130
