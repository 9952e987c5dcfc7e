"""Shape of the package code: short functions, light imports, dependencies one way."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 60


def test_no_function_in_pnp_imaging_is_longer_than_a_screen():
    long = []
    for path in sorted((ROOT / "pnp_imaging").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "split these into named steps: " + "; ".join(long)


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(','.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(out.stdout.strip().split(","))


def test_light_imports_and_one_way_dependencies():
    """numba loads on the first quantile update, not on import; the checkpoint module does not
    import the sampling driver (no cycle); operators and the zoo never import pnp_imaging."""
    mods = _imported_after("import pnp_imaging.samplers, pnp_imaging.checkpoint")
    assert "numba" not in mods
    assert "pnp_imaging.samplers.base" not in _imported_after("import pnp_imaging.checkpoint")
    assert not any(m.startswith("pnp_imaging") for m in _imported_after("import operators, denoisers_zoo"))
