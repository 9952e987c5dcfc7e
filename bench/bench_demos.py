"""Quality check of every demo config, on its own image and on a held-out one.

``python -m bench.bench_demos [--configs a,b] [--images own,heldout] [--budget demo|fast]``

Each demo config (``demos/configs/<name>.yaml``) runs through :func:`pnp_imaging.run` at its
own budget (``--budget demo``, the default) or at the ``--fast`` budget of the demo scripts
(``--budget fast``: plumbing only, the figures mean nothing), once on the config's own image
and once on a held-out image of the same channel count and size, with the observation simulated
from it by the same operator and noise. Held-out images (never used
to train any zoo denoiser; see ``data.held_out`` in ``denoisers_zoo/recipes``) are crops of
``skimage.data.astronaut`` written by ``data/make_data.py``: ``data/astronaut_gray_256.png``
for the 256x256 gray demos and ``data/astronaut_128.png`` for the 128x128 colour demo.
(``skimage.data.skin`` and ``eagle`` need the optional downloader ``pooch``; nothing here downloads.)

The criteria (:func:`check`; one per demo config in :data:`CRITERIA`):

* deblurring (gray, colour, Poisson) and the mismatch demos built on it: MMSE PSNR >= PSNR(y)
  + 3 dB and MAP PSNR >= PSNR(y) (diffusion demos, which compute no MAP: the MMSE check only);
* 50 % inpainting: MMSE PSNR >= 25 dB (PSNR(y) of a half-empty observation means nothing);
* every config: at most 0.5 % of the final chain states' pixels outside [-0.1, 1.1]
  (``summary["image_range"]["fraction"]``).

The coverage of the 90 % credible intervals, min ESS, max R-hat and the wall time are reported,
not checked. Results go to ``bench/results/bench_demos.json`` (one row per config x image; rows
of configs/images not run this time are kept from the previous file unless ``--fresh``; each
row carries its own provenance, :func:`bench._common.provenance`: time, budget, git commit and
whether the tree was clean, sha256 of the weights from ``denoisers_zoo/weights/manifest.json``).
Unless ``--no-readme`` (implied by ``--smoke`` or a non-default ``--out``), the README's table
between ``<!-- demo-table:start -->`` and ``<!-- demo-table:end -->`` is rewritten from that JSON;
``--table-only`` does just that.

Slow: each run is its config's budget: 300 MAP steps, then the Gaussian demos sample with
``type: auto`` (the likelihood-exact kinetic sampler) until the diagnostics pass (ESS >= 100,
R-hat <= 1.01) or ``n_steps``; Poisson keeps 300 SK-ROCK steps x 2 chains. The measured wall time
of each row is in ``bench/results/bench_demos.json`` (``--quick``: own images only, half the runs).
``tests/test_demo_quality.py`` asserts the same criteria.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from bench import _common as C

NAME = "bench_demos"
CONFIG_DIR = C.ROOT / "demos" / "configs"
DATA_DIR = C.ROOT / "data"
README = C.ROOT / "README.md"
TABLE_START, TABLE_END = "<!-- demo-table:start -->", "<!-- demo-table:end -->"
IMAGES = ("own", "heldout")
BUDGETS = ("demo", "fast")

#: held-out image for a demo whose own image has shape (channels, height, width)
HELD_OUT = {
    (1, 256, 256): "astronaut_gray_256.png",
    (3, 128, 128): "astronaut_128.png",
}

#: the check of each demo config: "deblur" (MMSE >= y + 3 dB, MAP >= y) or "inpainting" (MMSE >= 25 dB);
#: the mismatch demos follow the deblurring they are built on
CRITERIA = {
    "deblur_gray": "deblur",
    "deblur_rgb": "deblur",
    "poisson_deblur": "deblur",
    "mismatch_denoiser": "deblur",
    "mismatch_kernel": "deblur",
    "inpainting": "inpainting",
    "diffpir_deblur": "deblur_no_map",  # diffusion samplers start from noise: no MAP to check
    "diffpir_inpainting": "inpainting",
    "dps_inpainting": "inpainting",
    "pnpdm_deblur": "deblur",  # an MCMC: it starts from the MAP like the Langevin demos
}
MMSE_MARGIN_DB = 3.0  # deblurring: MMSE PSNR >= PSNR(y) + this
INPAINTING_MMSE_DB = 25.0  # inpainting: MMSE PSNR >= this
MAX_OUT_OF_RANGE = 0.005  # share of the final chain states' pixels outside IMAGE_RANGE
IMAGE_RANGE = (-0.1, 1.1)
CREDIBLE_LEVEL = 0.9


def demo_configs() -> list[str]:
    """Names of the demo configs (``demos/configs/*.yaml`` stems), sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


# --------------------------------------------------------------------------------------------
# the criteria
# --------------------------------------------------------------------------------------------
def _num(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _f(v, unit: str = " dB", digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}{unit}"


def check(config: str, summary: Mapping[str, Any]) -> dict:
    """Verdict of one run's ``summary`` against the criterion of demo ``config`` (see the module
    doc). Returns ``{"verdict": "pass"|"fail", "criterion": kind, "checks": [...], "failed": [...]}``;
    each check is ``{"name", "ok", "value", "bound", "text"}`` and ``failed`` lists the texts of
    the failed ones (a missing or non-finite figure fails its check)."""
    if config not in CRITERIA:
        raise KeyError(f"config {config!r}: no quality criterion; add it to bench.bench_demos.CRITERIA "
                       f"(known: {', '.join(sorted(CRITERIA))})")
    kind = CRITERIA[config]
    y, mp, mm = (_num(summary.get(k)) for k in ("psnr_y", "psnr_map", "psnr_mmse"))
    rng = summary.get("image_range") or {}
    frac = _num(rng.get("fraction"))
    checks = []

    def add(name: str, value, bound, at_least: bool, left: str, right: str, note: str = ""):
        """One check ``value >= bound`` (``at_least``) or ``value <= bound``; its text states what
        holds: ``left >= right`` when it passes, ``left < right`` when it fails."""
        ok = value is not None and bound is not None and (value >= bound if at_least else value <= bound)
        if ok:
            op = ">=" if at_least else "<="
        elif value is None or bound is None:
            op = "missing; need" + (" >=" if at_least else " <=")
        else:
            op = "<" if at_least else ">"
        checks.append({"name": name, "ok": ok, "value": value, "bound": bound, "text": f"{left} {op} {right}{note}"})

    if kind in ("deblur", "deblur_no_map"):
        add("mmse_vs_y", mm, None if y is None else y + MMSE_MARGIN_DB, True, f"MMSE PSNR {_f(mm)}",
            f"PSNR(y) {_f(y)} + {MMSE_MARGIN_DB:g} dB")
    if kind == "deblur":
        add("map_vs_y", mp, y, True, f"MAP PSNR {_f(mp)}", f"PSNR(y) {_f(y)}")
    if kind == "inpainting":
        add("mmse_abs", mm, INPAINTING_MMSE_DB, True, f"MMSE PSNR {_f(mm)}", f"{INPAINTING_MMSE_DB:g} dB")
    if kind not in ("deblur", "deblur_no_map", "inpainting"):  # pragma: no cover - CRITERIA holds only these
        raise ValueError(f"unknown criterion kind {kind!r}")
    same_range = (_num(rng.get("low")), _num(rng.get("high"))) in ((None, None), IMAGE_RANGE)
    lo, hi = IMAGE_RANGE
    add("image_range", frac if same_range else None, MAX_OUT_OF_RANGE, False,
        f"{_f(None if frac is None else 100 * frac, ' %', 3)} of the chains' pixels outside [{lo:g}, {hi:g}]",
        f"{100 * MAX_OUT_OF_RANGE:g} %", "" if same_range else f" (summary measured another range: {rng})")
    failed = [c["text"] for c in checks if not c["ok"]]
    return {"verdict": "fail" if failed else "pass", "criterion": kind, "checks": checks, "failed": failed}


# --------------------------------------------------------------------------------------------
# configs: own image or held-out image, budget
# --------------------------------------------------------------------------------------------
def held_out_image(shape) -> Path:
    """The held-out crop for an own image of shape ``(C, H, W)`` (or ``[1, C, H, W]``)."""
    key = tuple(int(s) for s in tuple(shape)[-3:])
    if key not in HELD_OUT:
        raise KeyError(f"no held-out image of shape {key} (channels, height, width); add a crop to "
                       f"data/make_data.py and to bench.bench_demos.HELD_OUT (have: {sorted(HELD_OUT)})")
    path = DATA_DIR / HELD_OUT[key]
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing; run `python data/make_data.py` from the repository root")
    return path


def prepare(config: str, image: str, budget: str) -> tuple[dict, dict]:
    """``(cfg, info)``: the raw config dict to pass to :func:`pnp_imaging.run` with
    ``base_dir=demos/configs`` (the image path made absolute) and what was changed."""
    from pnp_imaging.config import load_config, resolve_config, with_fast_budget
    from pnp_imaging.imageio import read_image

    if image not in IMAGES:
        raise ValueError(f"image: {image!r}; valid: {', '.join(IMAGES)}")
    if budget not in BUDGETS:
        raise ValueError(f"budget: {budget!r}; valid: {', '.join(BUDGETS)}")
    path = CONFIG_DIR / f"{config}.yaml"
    cfg = load_config(path)
    if budget == "fast":
        cfg = with_fast_budget(cfg)
    own = Path(resolve_config(cfg, base_dir=CONFIG_DIR).image)
    x_own = read_image(own)
    img = own if image == "own" else held_out_image(x_own.shape)
    cfg["image"] = str(img)
    info = {"image_file": os.path.relpath(img, C.ROOT), "shape": list(x_own.shape[1:])}
    return cfg, info


# --------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------
def weights_used(names) -> list[dict]:
    """One weights record per zoo model in ``names`` (file and sha256 from the zoo manifest,
    :func:`bench._common.zoo_weights`); a composite (``denoisers_zoo.blend``) stands for its two
    parts' weights; a name missing from the manifest gets sha256 None."""
    import denoisers_zoo

    composites = denoisers_zoo.read_manifest().get("composites", {})
    names = [p for n in names if n for p in ((composites[n]["low"], composites[n]["high"]) if n in composites else (n,))]
    out = []
    for name in dict.fromkeys(names):
        try:
            out.append(C.zoo_weights(name))
        except (KeyError, OSError, ValueError) as exc:
            out.append({"model": name, "file": None, "sha256": None,
                        "source": f"not in the zoo manifest ({type(exc).__name__}: {exc})"})
    return out


def git_now() -> dict:
    """:func:`bench._common.git_state` trimmed to commit/clean/n_changes (a row's git record)."""
    g = C.git_state()
    return {k: g.get(k) for k in ("commit", "clean", "n_changes")}


def row_provenance(names, git: dict) -> dict:
    """:func:`bench._common.provenance` of one run, with ``git`` (:func:`git_now`) taken when its
    code was loaded: the state at the start of the process, not at the end of a long run."""
    return {**C.provenance(weights_used(names)), "git": dict(git)}


def run_one(config: str, image: str, budget: str = "demo", *, progress: bool = False,
            runs_dir: str | os.PathLike | None = None, git: dict | None = None) -> dict:
    """Run demo ``config`` on ``image`` (own/heldout) at ``budget`` and return its table row
    (figures, verdict, provenance; ``git``: the state the code was loaded at, default now).
    A run that raises gives a row with status "error" and verdict "fail"."""
    import pnp_imaging

    git = git_now() if git is None else git
    row: dict[str, Any] = {"config": config, "image": image, "budget": budget,
                           "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    t0 = time.perf_counter()
    cfg, info = prepare(config, image, budget)
    row.update(info)
    s_cfg = cfg.get("sampler", {})
    row["sampler"] = {k: s_cfg.get(k) for k in ("type", "n_steps", "n_burnin", "chains", "stages")}
    row["map_steps"] = (cfg.get("map") or {}).get("n_steps")
    out_dir = None if runs_dir is None else Path(runs_dir) / f"{config}_{image}"
    try:
        post = pnp_imaging.run(cfg, out_dir=out_dir, progress=progress, base_dir=CONFIG_DIR)
    except Exception as exc:  # noqa: BLE001 - recorded in the row: the check fails, the bench goes on
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        row.update(status="error", error=msg, wall_s=time.perf_counter() - t0, verdict="fail",
                   criterion=CRITERIA.get(config), checks=[], failed=[f"run raised {msg}"])
        den = (cfg.get("prior") or {}).get("denoiser") or _default_prior(info["shape"][0])
        row.update(denoiser=den, provenance=row_provenance([den], git))
        return row
    s = post.summary
    rng = s.get("image_range") or {}
    row.update(
        status="ok",
        psnr_y=_num(s.get("psnr_y")), psnr_map=_num(s.get("psnr_map")), psnr_mmse=_num(s.get("psnr_mmse")),
        ssim_map=_num(s.get("ssim_map")), ssim_mmse=_num(s.get("ssim_mmse")),
        coverage=_num(s.get("coverage")), credible_level=_num(s.get("credible_level")),
        out_of_range_fraction=_num(rng.get("fraction")), out_of_range_pixels=rng.get("n_pixels"),
        image_range=[rng.get("low"), rng.get("high")],
        ess_min=_num(s.get("ess_min")), rhat_max=_num(s.get("rhat_max")),
        wall_s=_num(s.get("wall_s")),
        map={k: (s.get("map") or {}).get(k) for k in ("misfit", "out_of_range", "warning", "n_iter", "stop_reason")},
        warnings=list(s.get("warnings") or []),
        denoiser=s.get("denoiser"),
        mismatch_denoiser=(cfg.get("mismatch") or {}).get("denoiser"),
        mismatch=s.get("mismatch"),
        sampler_used=s.get("sampler"), stop=s.get("stop"),
        provenance=row_provenance([s.get("denoiser"), (cfg.get("mismatch") or {}).get("denoiser")], git),
    )
    if out_dir is not None:
        row["report"] = str(out_dir)
    row.update(check(config, s))
    return row


def _default_prior(channels: int) -> str | None:
    import denoisers_zoo

    try:
        return denoisers_zoo.default_prior(int(channels))
    except ValueError:
        return denoisers_zoo.SAMPLING_PRIORS.get(int(channels))


# --------------------------------------------------------------------------------------------
# JSON and the README table
# --------------------------------------------------------------------------------------------
def _clean(obj):
    """JSON-safe, strict: non-finite floats become None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def recheck(row: dict) -> dict:
    """``row`` with its verdict recomputed by :func:`check` from the figures it stores (rows kept
    from an earlier file follow the current criteria); rows of runs that raised stay failed."""
    if row.get("status") != "ok" or row.get("config") not in CRITERIA:
        return row
    summary = {k: row.get(k) for k in ("psnr_y", "psnr_map", "psnr_mmse")}
    lo, hi = (row.get("image_range") or [None, None])[:2]
    summary["image_range"] = {"fraction": row.get("out_of_range_fraction"), "low": lo, "high": hi}
    return {**row, **check(row["config"], summary)}


def _row_key(r: Mapping) -> tuple:
    order = {n: i for i, n in enumerate(demo_configs())}
    return (order.get(r["config"], len(order)), r["config"], IMAGES.index(r["image"]) if r["image"] in IMAGES else 9)


def _fmt(v, spec: str, suffix: str = "") -> str:
    return "–" if v is None else f"{v:{spec}}{suffix}"


def render_table(doc: Mapping) -> str:
    """The README's demo-quality table (Markdown) from a ``bench_demos.json`` document."""
    rows = sorted(doc.get("rows") or [], key=_row_key)
    lines = [
        "Quality check of every demo config at its own budget, on its own image and on a held-out one "
        "(astronaut crops, never used for training; `data/make_data.py`). Pass: deblurring (gray, colour, "
        f"Poisson, the mismatch demos) MMSE ≥ PSNR(y) + {MMSE_MARGIN_DB:g} dB and MAP ≥ PSNR(y); 50 % inpainting "
        f"MMSE ≥ {INPAINTING_MMSE_DB:g} dB; all: ≤ {100 * MAX_OUT_OF_RANGE:g} % of the final chain states' pixels "
        f"outside [{IMAGE_RANGE[0]:g}, {IMAGE_RANGE[1]:g}]. Coverage of the 90 % intervals, ESS, R̂ and wall time "
        "are reported, not checked. Regenerate: `python -m bench.bench_demos` (rows: "
        "`--configs a,b --images own,heldout`; this table alone: `--table-only`).",
        "",
        "| demo | image | budget | PSNR y | MAP | MMSE | cov. 90 % | out of range | min ESS | max R̂ | wall | check |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        img = Path(r.get("image_file") or "").name or r["image"]
        img = f"{r['image']} (`{img}`)"
        budget = r.get("budget", "?")
        if r.get("sampler") and budget == "demo":
            budget = _budget_cell(r)
        frac = r.get("out_of_range_fraction")
        if r.get("status") == "error":
            verdict = f"**FAIL** ({r.get('error', 'error')})"
        elif r.get("verdict") == "pass":
            verdict = "pass"
        else:
            verdict = "**FAIL**: " + "; ".join(r.get("failed") or [])
        den = r.get("denoiser")
        lines.append(
            f"| {r['config']}{f' ({den})' if den else ''} | {img} | {budget} | {_fmt(r.get('psnr_y'), '.2f')} | "
            f"{_fmt(r.get('psnr_map'), '.2f')} | {_fmt(r.get('psnr_mmse'), '.2f')} | "
            f"{_fmt(r.get('coverage'), '.3f')} | "
            f"{_fmt(None if frac is None else 100 * frac, '.3f', ' %')} | {_fmt(r.get('ess_min'), '.1f')} | "
            f"{_fmt(r.get('rhat_max'), '.2f')} | "
            f"{_fmt(None if r.get('wall_s') is None else r['wall_s'] / 60, '.1f', ' min')} | "
            f"{verdict} |")
    if not rows:
        lines.append("| (no rows yet) | | | | | | | | | | | |")
    dates = sorted({r.get("created_utc", "")[:10] for r in rows if r.get("created_utc")})
    gits = [(r.get("provenance") or {}).get("git") or {} for r in sorted(rows, key=lambda r: r.get("created_utc", ""))]
    commits = list(dict.fromkeys((g.get("commit") or "")[:10] for g in gits if g.get("commit")))
    dirty = any(g.get("clean") is False for g in gits)
    threads = sorted({str(r.get("torch_threads")) for r in rows if r.get("torch_threads") is not None})
    lines += ["", f"Measured {', '.join(dates) or '–'} at commit {', '.join(commits) or '–'}"
              f"{' (tree with uncommitted changes)' if dirty else ''}, torch threads {', '.join(threads) or '–'}, "
              "on the machine recorded in `bench/results/bench_demos.json`; PSNR in dB, budget = MAP steps + "
              "sampler iterations × chains, the sampler that ran and, for configs that run until converged "
              "(`until`), whether they stopped converged or at `n_steps`."]
    return "\n".join(lines)


def _budget_cell(row: Mapping) -> str:
    """``MAP steps + sampler iterations × chains`` as run, with the sampler that ran (the resolved
    name of ``type: auto``) and, for a run-until-converged config, why it stopped."""
    s = row["sampler"]
    stop = row.get("stop") or {}
    steps = stop.get("iterations") or s.get("n_steps")
    map_part = f"{row['map_steps']}+" if row.get("map_steps") and row.get("psnr_map") is not None else ""
    cell = f"{map_part}{steps}×{s.get('chains')} {row.get('sampler_used') or s.get('type')}"
    if stop.get("until"):
        cell += f" ({stop.get('reason')})"
    return cell


def update_readme(doc: Mapping, readme: Path = README) -> bool:
    """Rewrite the text between the README's table markers; False (and a log line) if they are missing."""
    text = readme.read_text()
    pat = re.compile(re.escape(TABLE_START) + r".*?" + re.escape(TABLE_END), re.S)
    if not pat.search(text):
        C.log(f"{readme}: markers {TABLE_START} / {TABLE_END} not found; table not written")
        return False
    new = pat.sub(lambda _: f"{TABLE_START}\n{render_table(doc)}\n{TABLE_END}", text, count=1)
    if new != text:
        from pnp_imaging._io import atomic_write_text

        atomic_write_text(readme, new)
    C.log(f"rewrote the demo table in {readme}")
    return True


def _load_doc(path: Path) -> dict | None:
    import json

    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def _csv(text: str | None, valid, what: str) -> list[str]:
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    bad = [t for t in items if t not in valid]
    if bad:
        raise SystemExit(f"--{what}: unknown {', '.join(bad)}; valid: {', '.join(valid)}")
    return items


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_demos", description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=None, help="comma-separated demo configs (default: all demos/configs/*.yaml)")
    ap.add_argument("--images", default=None,
                    help="own, heldout or both (default own,heldout; own with --quick/--smoke)")
    ap.add_argument("--budget", choices=BUDGETS, default=None,
                    help="demo = the config's own budget (default); fast = the demo scripts' --fast budget "
                         "(plumbing only: figures meaningless, verdicts will fail)")
    ap.add_argument("--out", default=str(C.RESULTS_DIR), help="output folder (default bench/results)")
    ap.add_argument("--fresh", action="store_true", help="drop the rows of the previous JSON instead of merging")
    ap.add_argument("--no-readme", dest="readme", action="store_false", help="do not rewrite the README table")
    ap.add_argument("--table-only", action="store_true",
                    help="only rewrite the README table from the existing JSON (verdicts re-checked from its figures)")
    ap.add_argument("--runs-dir", default=None, help="keep each run's output folder (report.html) under this folder")
    ap.add_argument("--progress", action="store_true", help="progress bars")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    g = ap.add_argument_group("run_all's common flags")
    g.add_argument("--quick", action="store_true", help="own images only (half the runs), demo budget")
    g.add_argument("--smoke", action="store_true",
                   help="fast budget, own images, deblur_gray only unless --configs; no README (tests)")
    for flag in ("--denoiser", "--fallback", "--lipschitz"):
        g.add_argument(flag, default=None, help="ignored: every demo config names its own denoiser")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    path = out / f"{NAME}.json"
    if args.table_only:
        doc = _load_doc(path)
        if doc is None:
            raise SystemExit(f"--table-only: {path} missing or unreadable; run the benchmark first")
        update_readme({**doc, "rows": [recheck(r) for r in doc.get("rows") or []]})
        return 0
    if args.threads and args.threads > 0:
        torch.set_num_threads(int(args.threads))
    configs = _csv(args.configs, demo_configs(), "configs") or (["deblur_gray"] if args.smoke else demo_configs())
    missing = [c for c in configs if c not in CRITERIA]
    if missing:
        raise SystemExit(f"no quality criterion for {missing}; add them to bench.bench_demos.CRITERIA")
    images = _csv(args.images, IMAGES, "images") or (["own"] if args.smoke or args.quick else list(IMAGES))
    budget = args.budget or ("fast" if args.smoke else "demo")
    mode = "smoke" if args.smoke else ("quick" if args.quick else "full")
    machine = C.machine_info()
    import pnp_imaging  # noqa: F401 - loaded before the git state is taken: the rows' code is this state's

    git = git_now()

    prev = None if args.fresh else _load_doc(path)
    rows = {(r["config"], r["image"]): r for r in (prev or {}).get("rows", []) if "config" in r and "image" in r}
    ran = []
    t_all = time.perf_counter()
    for config in configs:
        for image in images:
            C.log(f"{config} / {image} / budget {budget}: running")
            row = run_one(config, image, budget, progress=args.progress, runs_dir=args.runs_dir, git=git)
            row["torch_threads"] = torch.get_num_threads()
            row = _clean(row)
            ran.append(row)
            if not args.fresh:  # rows another bench process wrote meanwhile are kept too; this run's win
                rows.update({(r["config"], r["image"]): r for r in (_load_doc(path) or {}).get("rows", [])
                             if "config" in r and "image" in r})
            rows.update({(r["config"], r["image"]): r for r in ran})
            what = "; ".join(c["text"] for c in row["checks"]) or row.get("error", "")
            C.log(f"{config} / {image}: {row['verdict'].upper()} ({what}), wall {row.get('wall_s') or 0:.0f} s")
            doc = _document(args, mode, budget, machine, rows, ran, time.perf_counter() - t_all)
            C.write_json(path, doc)  # after every run (atomic): an interrupted bench keeps what it measured
    if args.readme and not args.smoke and out.resolve() == C.RESULTS_DIR.resolve():
        update_readme(doc)
    n_fail = sum(r["verdict"] != "pass" for r in ran)
    C.log(f"{len(ran) - n_fail}/{len(ran)} runs pass")
    # exit 0 when the benchmark ran: failures of the checks are results (run_all counts crashes only)
    return 0


def _document(args, mode: str, budget: str, machine: dict, rows: dict, ran: list, wall: float) -> dict:
    ordered = sorted((recheck(r) for r in rows.values()), key=_row_key)
    weights = {w["model"]: w for r in ordered for w in (r.get("provenance") or {}).get("weights") or []}
    try:
        machine = {**machine, "loadavg_at_end": list(os.getloadavg())}
    except OSError:
        pass
    return _clean({
        "benchmark": NAME,
        "status": "ok",
        "mode": mode,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python -m bench." + NAME, *map(str, args.argv)]),
        "machine": machine,
        "torch_threads": torch.get_num_threads(),
        "config": {"budget_this_run": budget, "configs_this_run": sorted({r["config"] for r in ran}),
                   "images_this_run": sorted({r["image"] for r in ran}), "held_out": HELD_OUT,
                   "criteria": CRITERIA, "mmse_margin_db": MMSE_MARGIN_DB, "inpainting_mmse_db": INPAINTING_MMSE_DB,
                   "max_out_of_range": MAX_OUT_OF_RANGE, "image_range": list(IMAGE_RANGE),
                   "credible_level": CREDIBLE_LEVEL, "wall_s_this_run": wall},
        "provenance": C.provenance(list(weights.values())),
        "denoiser": {"requested": "per demo config (prior.denoiser)",
                     "sha256": {name: w.get("sha256") for name, w in weights.items()}},
        "rows": ordered,
        "raw": {f"{r['config']}/{r['image']}": {k: r.get(k) for k in ("warnings", "map", "mismatch", "checks")}
                for r in ordered},
        "ratios": {f"{r['config']}/{r['image']}": {
            "mmse_minus_y_db": None if r.get("psnr_mmse") is None or r.get("psnr_y") is None
            else r["psnr_mmse"] - r["psnr_y"],
            "map_minus_y_db": None if r.get("psnr_map") is None or r.get("psnr_y") is None
            else r["psnr_map"] - r["psnr_y"]} for r in ordered},
        "notes": ("Quality check of the demo configs (criteria in config; bench/bench_demos.py). Each row is one "
                  "pnp_imaging.run at the row's budget with its own time and provenance (git state, sha256 of the "
                  "weights from the zoo manifest); the top-level provenance covers every row's weights; rows not "
                  "re-run this time are kept from the previous file. 'ratios' holds dB differences measured in the "
                  "same run. Check failures are results, not errors: status stays ok."),
    })


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
