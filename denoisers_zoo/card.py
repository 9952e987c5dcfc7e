"""Generate the model card ``weights/<name>.md`` from measured numbers (never by hand).

Usage::

    python -m denoisers_zoo.card NAME [--no-bm3d] [--manifest PATH]

Measures parameter count, forward time at 256x256 on this machine, PSNR on held-out images
(cameraman at sigma = 15, 25, 50 /255 for noise-conditional gray models; the fixed sigma for
fixed-sigma models) next to BM3D on the same noise realisation, and the residual Lipschitz
constant (power iteration on the Jacobian at a few noisy crops). Writes the card and records
``lipschitz`` and ``eval`` in the manifest entry.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["main", "make_card"]

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent


def _init_from(recipe_path: Path) -> dict | None:
    import yaml

    if not recipe_path.is_file():
        return None
    return (yaml.safe_load(recipe_path.read_text()) or {}).get("init_from")


def _earlier_stages(recipe_path: Path) -> list[tuple[dict, dict]]:
    """The ``init_from`` chain of a multi-stage recipe, nearest first: ``(init, train_info)`` per
    earlier stage (``train_info`` read next to that stage's weights; ``{}`` if absent here)."""
    chain: list[tuple[dict, dict]] = []
    path = recipe_path
    while len(chain) < 10:
        init = _init_from(path)
        if not init:
            break
        info_path = (REPO / init["file"]).parent / "train_info.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        chain.append((init, info))
        if not info.get("recipe"):  # that stage's train_info is not here: the chain ends
            break
        path = REPO / info["recipe"]
    return chain


def _stage_rows(recipe_path: Path) -> list[str]:
    """A multi-stage recipe (``init_from``): one row per earlier stage naming it and its budget."""
    chain = _earlier_stages(recipe_path)
    n = len(chain) + 1
    rows = []
    for i, (init, info) in enumerate(chain):
        budget = (f"{info.get('steps_done')} steps, {info.get('train_wall_minutes')} min" if info else "budget not recorded here")
        how = "widened from (function-preserving, `denoisers_zoo/widen.py`)" if init.get("widen") else "fine-tuned from"
        rows.append(f"| {how} (stage {n - 1 - i}) | `{info.get('recipe', init['file'])}` ({budget}; "
                    f"sha256 `{init.get('sha256', '')[:16]}…`){'; the rows above are stage ' + str(n) if i == 0 else ''} |")
    return rows


def _stage1_command(recipe_path: Path) -> str:
    """The commands that train the earlier stages, oldest first."""
    chain = _earlier_stages(recipe_path)
    cmds = []
    for k, (init, info) in enumerate(reversed(chain)):
        recipe = info.get("recipe") or f"denoisers_zoo/recipes/{Path(init['file']).parent.name}.yaml"
        cmds.append(f"`python -m denoisers_zoo.train {recipe}` (stage {k + 1}), then ")
    return "".join(cmds)


#: The zoo's PSNR bar for grayscale models (issue "denoiser zoo"): BM3D + 0.3 dB at each of these sigmas.
BAR_MARGIN_DB = 0.3
BAR_SIGMAS_255 = (15, 25, 50)


def quality_bar(table: dict, margin_db: float = BAR_MARGIN_DB, sigmas_255=BAR_SIGMAS_255) -> dict:
    """Compare a PSNR table (``{image: [row, ...]}`` with ``sigma_255``, ``gain_db``) with the bar
    ``model >= BM3D + margin_db`` at each sigma in ``sigmas_255``. Returns ``{"rows": [(image,
    sigma, gain, shortfall)], "met": n, "total": n}``; ``shortfall`` is ``max(0, margin - gain)``."""
    rows = []
    for img, img_rows in table.items():
        for r in img_rows:
            if r.get("gain_db") is None or not any(abs(r["sigma_255"] - s) < 1e-6 for s in sigmas_255):
                continue
            gain = float(r["gain_db"])
            rows.append((img, float(r["sigma_255"]), gain, max(0.0, round(margin_db - gain, 6))))
    return {"rows": rows, "met": sum(1 for *_, short in rows if short == 0.0), "total": len(rows)}


def _quality_bar_lines(table: dict) -> list[str]:
    bar = quality_bar(table)
    if not bar["total"]:
        return []
    verdict = "met" if bar["met"] == bar["total"] else "NOT met"
    lines = [f"## Quality bar: BM3D + {BAR_MARGIN_DB} dB at sigma = {', '.join(str(s) for s in BAR_SIGMAS_255)}/255 "
             f"— {verdict} ({bar['met']} of {bar['total']} rows)", "",
             "| image | sigma (/255) | gain over BM3D (dB) | short of the bar (dB) |", "|---|---|---|---|"]
    lines += [f"| {img} | {s:g} | {g:+.2f} | {short:.2f} |" for img, s, g, short in bar["rows"]]
    lines += ["", "The speed half of the bar (>= 30x BM3D on the same core) is measured by "
              "`python -m bench.bench_denoisers --threads 1 --cores 1` (`bench/results/denoisers.json`).", ""]
    return lines


#: card rows (/255) of a full-range model (diffusion samplers call it up to sigma ~ 80 on [0, 1])
FULL_RANGE_SIGMAS_255 = (1, 5, 15, 25, 50, 127.5, 255, 765, 2550)


def _sigmas_for(den) -> list[float]:
    lo, hi = den.sigma_range
    if hi - lo < 1e-9:
        return [round(lo * 255, 6)]
    if hi >= 1.0:
        return [s for s in FULL_RANGE_SIGMAS_255 if lo * 255 - 1e-9 <= s <= hi * 255 + 1e-9]
    return [s for s in (5, 15, 25, 50) if lo * 255 - 1e-9 <= s <= hi * 255 + 1e-9]


@dataclass
class _Measurements:
    """What the card reports, measured on this machine for one model."""

    den: object  # the loaded zoo denoiser
    n_params: int
    load_before: float  # 1-min load average just before the timing
    t256: float  # median seconds of one 256x256 forward pass
    base: object  # the BM3D baseline, or None
    ims: dict  # held-out images by name
    table: dict  # PSNR rows per image (``psnr_rows``)
    lip_sigmas: list  # noise levels of the local Lipschitz estimate
    lip: dict  # ``measure_lipschitz`` result
    cert: dict | None  # ``certified_residual_bound`` for LipDnCNN, else None


def _measure(name: str, mpath: Path, entry: dict, *, bm3d: bool, lip_points: int, lip_iter: int, lip_crop: int,
             sigmas_255, n_time: int) -> _Measurements:
    """Load ``name`` and measure it: parameters, forward time, PSNR table (next to BM3D if ``bm3d``),
    local residual Lipschitz estimate and, for LipDnCNN, the bound by construction."""
    import denoisers_zoo as zoo
    from denoisers_zoo.evaluate import eval_images, forward_time, measure_lipschitz, psnr_rows
    from denoisers_zoo.nets import count_parameters

    den = zoo.load(name, manifest=mpath)
    n_params = count_parameters(den)
    load_before = os.getloadavg()[0]
    t256 = forward_time(den, den.channels, 256, n=max(2, 3 * n_time))
    base = zoo.load("bm3d") if bm3d else None
    sigmas = _sigmas_for(den) if sigmas_255 is None else list(sigmas_255)
    ims = eval_images(den.channels)
    table = {k: psnr_rows(den, im, sigmas, seed=0, baseline=base, n_time=n_time) for k, im in ims.items()}
    lip_sigmas = [s / 255 for s in sigmas if s <= 25] or [sigmas[0] / 255]
    lip = measure_lipschitz(den, next(iter(ims.values())), lip_sigmas[:2], n_points=lip_points, crop=lip_crop, n_iter=lip_iter)
    cert = None
    if entry["arch"].get("type") == "lipdncnn":
        from denoisers_zoo.lipschitz import certified_residual_bound

        cert = certified_residual_bound(den.net, grid=128)
    return _Measurements(den=den, n_params=n_params, load_before=load_before, t256=t256, base=base, ims=ims,
                         table=table, lip_sigmas=lip_sigmas, lip=lip, cert=cert)


def _record_in_manifest(data: dict, entry: dict, m: _Measurements, mpath: Path) -> None:
    """Set the entry's ``lipschitz`` attribute and ``eval`` record from ``m``, and rewrite the manifest."""
    from denoisers_zoo.train import _hardware, write_manifest

    # the attribute samplers read: the construction bound where there is one (an upper bound),
    # else the measured local maximum (a lower bound of the global constant; see the card)
    lip_attr = max(float(m.lip["max"]), float(m.cert["product_grid_max"])) if m.cert else float(m.lip["max"])
    entry["lipschitz"] = round(lip_attr, 4)
    entry["eval"] = {
        "forward_ms_256": round(m.t256 * 1e3, 2), "threads": torch.get_num_threads(), "hardware": _hardware(),
        "loadavg_1min_at_timing": round(m.load_before, 2),
        "psnr": m.table, "lipschitz_measurement": m.lip, "lipschitz_construction": m.cert,
    }
    write_manifest(data, mpath)


def _summary_lines(name: str, entry: dict, m: _Measurements, mpath: Path, recipe_path: Path) -> list[str]:
    """Title and the field/value table: architecture, weights, training budget and stages, timing, Lipschitz."""
    from denoisers_zoo.train import _hardware

    den, tr, lip = m.den, entry.get("train", {}), m.lip
    lines = [
        f"# Model card: `{name}`",
        "",
        "Generated by `python -m denoisers_zoo.card " + name + "` from measured numbers; do not edit by hand.",
        "",
        "| field | value |", "|---|---|",
        f"| architecture | `{json.dumps(entry['arch'])}` |",
        f"| channels | {den.channels} |",
        f"| sigma_range ([0,1] scale) | [{den.sigma_range[0]:.5f}, {den.sigma_range[1]:.5f}] = [{den.sigma_range[0]*255:.3g}, {den.sigma_range[1]*255:.3g}]/255 |",
        f"| parameters | {m.n_params:,} |",
        f"| weights file | `{entry['file']}` ({(mpath.parent / entry['file']).stat().st_size / 1e6:.2f} MB, float32 state_dict) |",
        f"| sha256 | `{entry['sha256']}` |",
        f"| training steps | {tr.get('steps_done')} done of {tr.get('steps_planned')} planned (stopped by `{tr.get('stopped_by')}`) |",
        f"| training wall time | {tr.get('train_wall_minutes')} min, {tr.get('threads')} thread(s) |",
        *_stage_rows(recipe_path),
        f"| training hardware | {tr.get('hardware')} |",
        f"| final training PSNR (EMA over training batches, sigma drawn as in the recipe) | {tr.get('final_train_psnr_ema', float('nan')):.2f} dB |",
        f"| forward time 256x256 (median, {torch.get_num_threads()} threads) | {m.t256 * 1e3:.1f} ms on {platform.machine()} ({_hardware()}); 1-min load average {m.load_before:.1f} when measured (other jobs inflate it) |",
        f"| `lipschitz` attribute (manifest) | {entry['lipschitz']} ({'bound by construction' if m.cert else 'max local estimate below'}) |",
        f"| residual Lipschitz (max local estimate) | {lip['max']:.4f} (power iteration, {lip['n_iter']} it, {len(lip['points'])} noisy {lip['crop']}x{lip['crop']} crops at sigma = {', '.join(f'{s*255:g}' for s in m.lip_sigmas[:2])}/255; a lower bound of the global constant) |",
    ]
    if m.cert is not None:
        cert = m.cert
        lines.append(
            f"| residual Lipschitz by construction | product of per-layer conv norms on a {cert['grid']}x{cert['grid']} frequency grid: "
            f"{cert['product_grid_max']:.4f} (layers: {', '.join(f'{v:.4f}' for v in cert['per_layer_grid_max'])}); "
            f"certified upper bound (Bernstein, off-grid frequencies): {cert['certified_upper_bound']:.3f} |")
    return lines


def _psnr_lines(name: str, m: _Measurements) -> list[str]:
    """The held-out PSNR section: one table per image (with BM3D, gain and speed ratio when measured),
    the speed-column note and, for gray models, the quality bar."""
    lines = ["", "## PSNR on held-out images (dB; same noise realisation for every method; outputs clamped to [0,1])", ""]
    for img, rows in m.table.items():
        shape = tuple(m.ims[img].shape[-2:])
        lines += [f"**{img}** {shape[0]}x{shape[1]}", "",
                  "| sigma (/255) | noisy | " + name + (" | BM3D | gain | BM3D time / model time |" if m.base else " |"),
                  "|---|---|---|" + ("---|---|---|" if m.base else "")]
        for r in rows:
            line = f"| {r['sigma_255']:g} | {r['psnr_noisy']:.2f} | {r['psnr_model']:.2f} |"
            if m.base and "psnr_baseline" in r:
                line += f" {r['psnr_baseline']:.2f} | {r['gain_db']:+.2f} | {r['speed_ratio']:.0f}x |"
            elif m.base:
                line += " — | — | — |"  # beyond the baseline's sigma range
            lines.append(line)
        lines.append("")
    if m.base:
        lines += ["Speed column: the network on the torch threads above, BM3D with the threads its library starts "
                  "itself (not pinned), so it favours BM3D; the same-cores ratio is in `bench/results/denoisers.json` "
                  "(`python -m bench.bench_denoisers --threads 1 --cores 1`).", ""]
    if m.base and m.den.channels == 1:
        lines += _quality_bar_lines(m.table)
    return lines


def _data_and_recipe_lines(name: str, entry: dict, recipe_path: Path) -> list[str]:
    """The data section, the recipe file verbatim and the commands that reproduce the model."""
    recipe_text = recipe_path.read_text() if recipe_path.is_file() else "(recipe file not found)"
    return [
        "## Data", "",
        "Training images: scikit-image bundled images listed in the recipe (`data.train`); `camera` and `astronaut` are held out "
        "and used only for the evaluation above (astronaut crop rows 0:256, cols 128:384).", "",
        "## Recipe (`" + entry.get("recipe", "") + "`)", "", "```yaml", recipe_text.rstrip(), "```", "",
        "Reproduce: " + _stage1_command(recipe_path) + "`python -m denoisers_zoo.train " + entry.get("recipe", "RECIPE") + " --install` then "
        "`python -m denoisers_zoo.card " + name + "`. The stop rule is `steps` or `max_wall_minutes` of training time, "
        "whichever comes first, so on a different machine the number of steps (and the result) differs; the steps done are above.", "",
    ]


def make_card(name: str, *, manifest: str | os.PathLike | None = None, bm3d: bool = True,
              lip_points: int = 3, lip_iter: int = 25, lip_crop: int = 48, sigmas_255=None, n_time: int = 3) -> Path:
    """Measure and write ``<weights>/<name>.md``; record ``lipschitz`` and ``eval`` in the manifest.
    ``sigmas_255`` / ``n_time`` / ``lip_*`` shrink the work (tests)."""
    import denoisers_zoo as zoo

    mpath = Path(manifest) if manifest else zoo.MANIFEST_PATH
    data = zoo.read_manifest(mpath)
    entry = data["models"][name]
    m = _measure(name, mpath, entry, bm3d=bm3d, lip_points=lip_points, lip_iter=lip_iter, lip_crop=lip_crop,
                 sigmas_255=sigmas_255, n_time=n_time)
    _record_in_manifest(data, entry, m, mpath)

    recipe_path = REPO / entry.get("recipe", "")
    lines = _summary_lines(name, entry, m, mpath, recipe_path) + _psnr_lines(name, m) + _data_and_recipe_lines(name, entry, recipe_path)
    card = mpath.parent / f"{name}.md"
    card.write_text("\n".join(lines))
    print(f"[card] wrote {card}; lipschitz {m.lip['max']:.4f}; forward 256^2 {m.t256 * 1e3:.1f} ms", flush=True)
    return card


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m denoisers_zoo.card", description="Generate a zoo model card from measurements.")
    ap.add_argument("name", help="model name in the manifest")
    ap.add_argument("--manifest", default=None)
    ap.add_argument("--no-bm3d", action="store_true", help="skip the BM3D comparison (faster)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for the timing (default 1: on a shared machine more threads oversubscribe the cores)")
    ap.add_argument("--lip-points", type=int, default=3, help="noisy crops per sigma for the Lipschitz estimate")
    ap.add_argument("--lip-iter", type=int, default=25, help="power iterations per crop")
    ap.add_argument("--lip-crop", type=int, default=48, help="crop size for the Lipschitz estimate")
    a = ap.parse_args(argv)
    from denoisers_zoo.cpu_alloc import keep_freed_memory

    keep_freed_memory()  # stable forward times (see denoisers_zoo/cpu_alloc.py)
    torch.set_num_threads(max(1, a.threads))
    make_card(a.name, manifest=a.manifest, bm3d=not a.no_bm3d, lip_points=a.lip_points, lip_iter=a.lip_iter,
              lip_crop=a.lip_crop)
    return 0


class _CallableModule(types.ModuleType):
    """Importing this submodule rebinds the package attribute ``denoisers_zoo.card`` to it; being
    callable, ``denoisers_zoo.card(name)`` keeps returning the card text (``denoisers_zoo._read_card``)."""

    def __call__(self, name: str, **kw) -> str:
        import denoisers_zoo

        return denoisers_zoo._read_card(name, **kw)


if __name__ != "__main__":
    sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    raise SystemExit(main())
