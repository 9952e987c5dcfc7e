"""Documentation: the pdoc API reference builds (as ``make docs`` does), docstrings cite papers or
``docs/algorithms.md`` sections, and every cited section exists."""
from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("pnp_imaging", "operators", "denoisers_zoo")
ALGORITHMS = ROOT / "docs" / "algorithms.md"


def _sources() -> list[pathlib.Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _doc_modules() -> tuple[list[str], list[str]]:
    """(packages, public non-package modules), as the Makefile's DOC_PKGS / DOC_MODS."""
    pkgs = sorted(_module_name(p) for p in _sources() if p.name == "__init__.py")
    mods = sorted(_module_name(p) for p in _sources() if not p.name.startswith("_"))
    return pkgs, mods


def _docstrings(path: pathlib.Path):
    """``(qualified name, docstring)`` of the module and of every class and function in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    mod = _module_name(path)
    doc = ast.get_docstring(tree, clean=False)
    if doc:
        yield mod, doc

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}.{child.name}"
                d = ast.get_docstring(child, clean=False)
                if d:
                    yield name, d
                yield from walk(child, name)

    yield from walk(tree, mod)


def test_pdoc_builds_every_public_module(tmp_path):
    pytest.importorskip("pdoc")
    pkgs, mods = _doc_modules()
    exclude = "!(" + "|".join(mods) + ")$"
    out = tmp_path / "api"
    proc = subprocess.run(
        [sys.executable, "-m", "pdoc", "-d", "restructuredtext", "-o", str(out), *pkgs, exclude, *mods],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # an import failure is only a warning for pdoc: the module's page is then missing
    for bad in ("Couldn't import", "Error loading", "Cannot find spec", "Error importing"):
        assert bad not in proc.stderr, proc.stderr[-4000:]
    assert (out / "index.html").is_file()
    assert (out / "search.js").is_file()
    missing = [m for m in pkgs + mods if not (out / (m.replace(".", "/") + ".html")).is_file()]
    assert not missing, f"no page for {missing}"
    assert "docs/algorithms.md" in (out / "pnp_imaging" / "priors.html").read_text(encoding="utf-8")


def test_docstrings_cite_papers_not_internal_notes():
    bad = []
    for path in _sources():
        for name, doc in _docstrings(path):
            for word in ("reference §", "reference sheet", "pitfall"):
                if word in doc.lower():
                    bad.append(f"{name}: {word!r}")
    assert not bad, "cite the paper or docs/algorithms.md §<section> instead:\n" + "\n".join(bad)


def test_cited_algorithm_sections_exist():
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', ALGORITHMS.read_text(encoding="utf-8")))
    assert {"pnp-ula", "pnp-ula-step", "skrock", "pnp-sgd", "kept-iterations", "diagnostics"} <= anchors
    cited = {}
    for path in _sources():
        for sec in re.findall(r"algorithms\.md\s+§([a-z0-9-]+)", path.read_text(encoding="utf-8")):
            cited.setdefault(sec, []).append(str(path.relative_to(ROOT)))
    unknown = {sec: where for sec, where in cited.items() if sec not in anchors}
    assert not unknown, f"docs/algorithms.md has no section for {unknown}"
