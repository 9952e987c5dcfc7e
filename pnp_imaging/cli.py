"""``pnp-imaging`` command line (also ``python -m pnp_imaging``).

Subcommands: ``run``, ``demo``, ``simulate``, ``report``, ``zoo list|card|train``, ``analyze ...``
(:mod:`pnp_imaging.analyses.cli`), ``dmmd train|sample|evaluate`` (:mod:`pnp_imaging.dmmd.cli`).
Configuration problems exit with code 2 and one line on stderr naming the key and the fix.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
REPO_DATA = Path(__file__).resolve().parent.parent / "data"
DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pnp-imaging",
        description="Bayesian imaging with plug-and-play priors: MMSE (PnP-ULA / SK-ROCK), MAP (PnP-SGD), "
        "uncertainty, diagnostics and an HTML report.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the whole pipeline from a YAML config", description="Problem → MAP → sampling → diagnostics → report.")
    p.add_argument("config", help="YAML config file (see README for the schema)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<config name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set sampler.n_steps=500 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--distributed", action="store_true",
                   help="one rank of a torchrun job (torchrun --nproc_per_node N -m pnp_imaging run CONFIG "
                        "--distributed): chains split across ranks, statistics merged on rank 0")
    p.add_argument("--dist-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="with --distributed: how long a rank waits for the others before stopping (default 300)")

    p = sub.add_parser("demo", help="embedded deblurring demo (cameraman, 9×9 uniform blur, σ=1/255)",
                       description="Runs the embedded default problem end to end and writes its report.")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--fast", action="store_true", help="tiny budget (seconds), for smoke tests")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("simulate", help="simulate an observation from an image + operator/noise config",
                       description="Writes y.npy and y.png from the config's image, operator and noise sections.")
    p.add_argument("config")
    p.add_argument("--out", required=True, help="output .npy path for y (a .png preview is written next to it)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    p = sub.add_parser("report", help="re-render report.html from a saved run folder")
    p.add_argument("dir")

    p = sub.add_parser("zoo", help="denoiser zoo: list, show a model card, train from a recipe")
    zsub = p.add_subparsers(dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    zsub.add_parser("list", help="list available denoisers")
    q = zsub.add_parser("card", help="print a model card")
    q.add_argument("name")
    q = zsub.add_parser("train", help="train a denoiser from a YAML recipe (resumable)")
    q.add_argument("recipe")
    q.add_argument("rest", nargs=argparse.REMAINDER, help="extra arguments for denoisers_zoo.train")
    from pnp_imaging.analyses.cli import add_analyze_parser

    add_analyze_parser(sub)
    from pnp_imaging.dmmd.cli import add_parser as add_dmmd_parser

    add_dmmd_parser(sub)
    return parser


def _error(message: str) -> int:
    print(f"pnp-imaging: error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def _cmd_run(config, out, overrides, *, resume: bool, quiet: bool, base_dir=None, distributed: bool = False,
             dist_timeout: float = 300.0) -> int:
    from pnp_imaging.api import run
    from pnp_imaging.config import ConfigError, apply_overrides, load_config
    from pnp_imaging.distributed import RankFailure
    from pnp_imaging.samplers.base import DivergenceError
    from pnp_imaging.sampling import SamplingInterrupted

    try:
        raw = load_config(config) if isinstance(config, (str, Path)) else dict(config)
        raw = apply_overrides(raw, overrides)
        base = base_dir if base_dir is not None else (Path(config).parent if isinstance(config, (str, Path)) else None)
        result = run(raw, out_dir=out, resume=resume, progress=not quiet, base_dir=base, distributed=distributed,
                     dist_timeout_s=dist_timeout)
    except RankFailure as exc:
        print(f"pnp-imaging: error: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        return _error(str(exc))
    except (FileNotFoundError, ValueError) as exc:
        return _error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except SamplingInterrupted as exc:
        print(f"pnp-imaging: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("pnp-imaging: interrupted before sampling started; nothing to resume, run again", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DivergenceError as exc:
        print(f"pnp-imaging: error: {exc}", file=sys.stderr)
        return 1
    s = result.summary
    if not s.get("distributed", {}).get("merged", True):
        return 0  # a rank other than 0: rank 0 reports for all chains
    psnr = f", PSNR(MMSE) = {s['psnr_mmse']:.2f} dB" if s.get("psnr_mmse") is not None else ""
    print(f"done in {s['wall_s']:.1f} s{psnr}; report: {Path(result.out_dir) / 'report.html'}")
    warnings = s.get("warnings", [])
    for warning in warnings[:2]:
        print(f"warning: {warning}")
    if len(warnings) > 2:
        print(f"warning: ... {len(warnings) - 2} more convergence warnings in report.html")
    return 0


def _demo_config(fast: bool) -> dict:
    from pnp_imaging.config import load_config, with_fast_budget

    cfg = load_config(DEMO_CONFIG)
    cfg["image"] = str(REPO_DATA / "cameraman.png")
    return with_fast_budget(cfg) if fast else cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from denoisers_zoo.cpu_alloc import keep_freed_memory

    keep_freed_memory()  # repeated network calls stop page-faulting: ~1.5x faster on CPU (see its doc)
    if args.command == "run":
        if args.out is None:
            args.out = str(Path("runs") / Path(args.config).stem)
        return _cmd_run(args.config, args.out, args.overrides, resume=args.resume, quiet=args.quiet,
                        distributed=args.distributed, dist_timeout=args.dist_timeout)
    if args.command == "demo":
        if not (REPO_DATA / "cameraman.png").is_file():
            return _error(f"demo image missing: {REPO_DATA / 'cameraman.png'}; run from a full checkout of the repository")
        return _cmd_run(_demo_config(args.fast), args.out, args.overrides, resume=False, quiet=args.quiet)
    if args.command == "simulate":
        return _cmd_simulate(args)
    if args.command == "report":
        from pnp_imaging.report import render_report

        try:
            path = render_report(args.dir)
        except FileNotFoundError as exc:
            return _error(str(exc))
        print(path)
        return 0
    if args.command == "zoo":
        return _cmd_zoo(args)
    if args.command == "analyze":
        from pnp_imaging.analyses.cli import run_analyze

        return run_analyze(args)
    if args.command == "dmmd":
        from pnp_imaging.dmmd.cli import run as run_dmmd

        return run_dmmd(args)
    return _error(f"unknown command {args.command}")  # pragma: no cover (argparse rejects it)


def _cmd_simulate(args) -> int:
    import torch

    from pnp_imaging.config import ConfigError, apply_overrides, load_config, resolve_config
    from pnp_imaging.imageio import write_image
    from pnp_imaging.problem import Problem

    try:
        cfg = resolve_config(apply_overrides(load_config(args.config), args.overrides), base_dir=Path(args.config).parent)
        if cfg.image is None:
            raise ConfigError("image: simulate needs a ground-truth 'image' in the config")
        section = {"image": cfg.image, "operator": cfg.operator, "noise": cfg.noise}
        problem = Problem.from_config(section, generator=torch.Generator().manual_seed(cfg.seed))
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        return _error(str(exc).splitlines()[0])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_image(out.with_suffix(".npy"), problem.y)
    write_image(out.with_suffix(".png"), problem.y.clamp(0, 1))
    print(out.with_suffix(".npy"))
    return 0


def _cmd_zoo(args) -> int:
    import denoisers_zoo

    if args.zoo_command == "list":
        for name in denoisers_zoo.available():
            print(name)
        return 0
    if args.zoo_command == "card":
        try:
            print(denoisers_zoo.card(args.name))
        except (KeyError, FileNotFoundError, ValueError) as exc:
            return _error(str(exc).strip("'\""))
        return 0
    if args.zoo_command == "train":
        from denoisers_zoo.train import main as train_main

        return int(train_main([args.recipe, *args.rest]) or 0)
    return _error(f"unknown zoo command {args.zoo_command}")  # pragma: no cover
