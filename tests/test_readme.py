"""The README's Python example runs as written (from the repository root) and does what it says."""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    (block,) = _python_blocks((ROOT / "README.md").read_text())
    assert "pnp_imaging.sample(problem, prior" in block and len(block.strip().splitlines()) <= 14
    monkeypatch.chdir(ROOT)
    code = block.replace('"runs/my_posterior"', repr(str(tmp_path / "post")))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    from pnp_imaging import Posterior
    from pnp_imaging.metrics import psnr

    post, problem = namespace["post"], namespace["problem"]
    assert psnr(post.mmse, problem.x_true) > psnr(problem.y, problem.x_true) + 3  # better than the blurred data
    loaded = Posterior.load(tmp_path / "post")
    assert (loaded.mmse == post.mmse).all() and loaded.verdict == post.verdict
    assert os.path.isfile(tmp_path / "post" / "summary.json")
    assert str(post.summary["psnr_mmse"])[:5] in capsys.readouterr().out
