"""Which benchmark results were computed with other weights than the shipped ones.

    python -m bench.stale [FOLDER]     # default bench/results; exit 1 if any result is stale

One line per JSON file: ``fresh``, ``stale`` or ``unknown``, and why. A result is **stale** when
a weights record in it (``provenance.weights``, at the top or in any row, written by
:func:`bench._common.provenance`) names a model whose sha256 differs from the shipped one in
``denoisers_zoo/weights/manifest.json``, a model that is not shipped, or a network without the
shipped weights (untrained, training checkpoint). A result without weights records is judged by
its date: stale when its ``created_utc`` precedes the last git commit of the weights file of a
model it names (``denoiser.requested``, ``denoiser.name``, ``models``). ``evidence/`` is skipped:
it holds historical runs, kept on purpose with older weights.
"""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from bench import _common as C

SKIP = ("evidence",)


def shipped() -> dict:
    """``{model: manifest entry}`` of the shipped weights."""
    import denoisers_zoo

    return denoisers_zoo.read_manifest()["models"]


def weights_records(doc) -> list[dict]:
    """Every weights record of a result: ``provenance.weights`` wherever it occurs in ``doc``."""
    out = []
    if isinstance(doc, dict):
        prov = doc.get("provenance")
        if isinstance(prov, dict) and isinstance(prov.get("weights"), list):
            out += [w for w in prov["weights"] if isinstance(w, dict)]
        for key, value in doc.items():
            if key != "provenance":
                out += weights_records(value)
    elif isinstance(doc, list):
        for value in doc:
            out += weights_records(value)
    return out


def _by_sha(records: list[dict], models: dict) -> tuple[str, str]:
    bad = []
    for w in records:
        name, sha = w.get("model"), w.get("sha256")
        if name not in models:
            bad.append(f"{name}: not a shipped model")
        elif sha is None:
            bad.append(f"{name}: {w.get('source', 'no weights file')}")
        elif sha != models[name]["sha256"]:
            bad.append(f"{name}: sha256 {sha[:12]}... is not the shipped {models[name]['sha256'][:12]}...")
    if bad:
        return "stale", "; ".join(dict.fromkeys(bad))
    return "fresh", "sha256 of " + ", ".join(sorted({w["model"] for w in records})) + " = shipped"


def _commit_time(path: Path) -> datetime | None:
    try:
        p = subprocess.run(["git", "log", "-1", "--format=%cI", "--", str(path)], cwd=C.ROOT, capture_output=True,
                           text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return datetime.fromisoformat(p.stdout.strip()) if p.returncode == 0 and p.stdout.strip() else None


def _named_models(doc: dict, models: dict) -> list[str]:
    den = doc.get("denoiser") or {}
    names = [den.get("requested"), den.get("name"), *(doc.get("models") or {})]
    return [n for n in dict.fromkeys(names) if isinstance(n, str) and n in models]


def _by_date(doc: dict, models: dict) -> tuple[str, str]:
    names = _named_models(doc, models)
    created = doc.get("created_utc")
    if not names or not created:
        return "unknown", "no weights record, and no shipped model or creation date named"
    when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    older = []
    for name in names:
        committed = _commit_time(C.ROOT / C.zoo_weights(name)["file"])
        if committed is None:
            return "unknown", f"no weights record, and no git date for {name}'s weights"
        if when < committed:
            older.append(f"{name} (weights committed {committed.isoformat()})")
    if older:
        return "stale", f"created {created}, before the shipped weights of " + ", ".join(older)
    return "fresh", f"no weights record; created {created}, after the last commit of {', '.join(names)}'s weights"


def verdict(doc: dict, models: dict | None = None) -> tuple[str, str]:
    """``(status, reason)`` of one result (module docstring)."""
    models = shipped() if models is None else models
    records = weights_records(doc)
    return _by_sha(records, models) if records else _by_date(doc, models)


def scan(folder=C.RESULTS_DIR) -> dict[str, tuple[str, str]]:
    """``{path relative to folder: (status, reason)}`` for every JSON below ``folder`` but ``evidence/``."""
    folder = Path(folder)
    models = shipped()
    out = {}
    for path in sorted(folder.rglob("*.json")):
        rel = path.relative_to(folder)
        if rel.parts[0] in SKIP:
            continue
        try:
            out[str(rel)] = verdict(json.loads(path.read_text()), models)
        except (OSError, ValueError) as e:
            out[str(rel)] = ("unknown", f"unreadable ({type(e).__name__})")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    found = scan(argv[0] if argv else C.RESULTS_DIR)
    for rel, (status, reason) in found.items():
        print(f"{status:8s} {rel}: {reason}")
    return 1 if any(status == "stale" for status, _ in found.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
