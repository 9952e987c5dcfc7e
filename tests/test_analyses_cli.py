"""``pnp-imaging analyze regimes|lipschitz``: JSON on stdout only, report files, one-line errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pnp_imaging.cli import main


@pytest.fixture()
def mixture_npy(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.choice([-1.0, 1.0], size=(300, 1)) * np.ones(16) + rng.standard_normal((300, 16))
    path = tmp_path / "gm.npy"
    np.save(path, x.reshape(300, 4, 4))
    return path, x


def test_regimes_json_is_the_only_stdout_and_report_is_written(mixture_npy, tmp_path, capsys):
    path, x = mixture_npy
    out_dir = tmp_path / "rep"
    rc = main(["analyze", "regimes", str(path), "--json", "--out", str(out_dir), "--t-max", "2", "--n-times", "12", "--n-samples", "200"])
    captured = capsys.readouterr()
    assert rc == 0
    assert captured.out.count("\n") == 1  # exactly one JSON object, one line
    summary = json.loads(captured.out)
    lam = np.linalg.eigvalsh(np.cov(x.T))[-1]
    assert summary["Lambda"] == pytest.approx(lam, rel=1e-9)
    assert summary["t_S"] == pytest.approx(0.5 * math.log(lam))
    assert 0 < summary["t_C"] < 2 and (summary["n"], summary["d"]) == (300, 16)
    assert len(summary["times"]) == len(summary["f_e"]) == 12
    assert "300 samples of dimension 16" in captured.err
    html = (out_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "t_S" in html
    assert json.loads((out_dir / "regimes.json").read_text())["Lambda"] == pytest.approx(lam, rel=1e-9)


def test_regimes_scale_option_shifts_t_s_by_log_scale(mixture_npy, capsys):
    path, _ = mixture_npy
    args = ["analyze", "regimes", str(path), "--json", "--n-times", "4", "--n-samples", "50"]
    assert main(args) == 0
    base = json.loads(capsys.readouterr().out)
    assert main(args + ["--scale", "2"]) == 0
    scaled = json.loads(capsys.readouterr().out)
    assert scaled["t_S"] == pytest.approx(base["t_S"] + math.log(2.0))


@pytest.mark.parametrize("content, words", [(None, "does not exist"), (np.ones(5), "shape"), (np.ones((1, 4)), "at least 2")])
def test_regimes_bad_data_one_line_error(tmp_path, capsys, content, words):
    path = tmp_path / "bad.npy"
    if content is not None:
        np.save(path, content)
    assert main(["analyze", "regimes", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert words in captured.err and captured.err.strip().count("\n") == 0


def test_lipschitz_of_a_zoo_model_and_the_bound(capsys):
    rc = main(["analyze", "lipschitz", "lipdncnn_gray_s5", "--json", "--size", "16", "--points", "1", "--iters", "5",
               "--separation", "1", "4"])
    captured = capsys.readouterr()
    assert rc == 0
    rep = json.loads(captured.out)
    assert 0.5 < rep["lipschitz_residual"] < 1.05  # residual 1-Lipschitz by construction (model card)
    assert rep["lipschitz_denoiser"] > 0
    assert [row["separation"] for row in rep["pushforward_bound"]] == [1.0, 4.0]
    assert rep["pushforward_bound"][0]["min_gap_mass"] < rep["pushforward_bound"][1]["min_gap_mass"]


def test_lipschitz_unknown_model_is_a_one_line_error(capsys):
    assert main(["analyze", "lipschitz", "no_such_model"]) == 2
    err = capsys.readouterr().err
    assert "unknown denoiser" in err and err.strip().count("\n") == 0


@pytest.mark.slow
def test_cloning_json_is_the_only_stdout_and_uses_the_regimes_times(tmp_path, capsys):
    from pnp_imaging.analyses.cloning import digits_in_ou_units
    from pnp_imaging.analyses.regimes import speciation_time

    rc = main(["analyze", "cloning", "--out", str(tmp_path), "--fast", "--json"])
    captured = capsys.readouterr()
    assert rc == 0 and captured.out.count("\n") == 1
    res = json.loads(captured.out)
    t_s = speciation_time(digits_in_ou_units()["train"].double().numpy())["t_S"]
    assert res["t_S"] == pytest.approx(t_s) and 0.0 < res["t_C"] < res["t_S"]
    assert (tmp_path / "cloning.png").is_file() and (tmp_path / "regimes.json").is_file()
    html = (tmp_path / "report.html").read_text()
    assert "Predicted and measured" in html and "data:image/png;base64," in html


def test_cloning_bad_pairs_is_a_one_line_error(tmp_path, capsys):
    assert main(["analyze", "cloning", "--out", str(tmp_path), "--n-pairs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--n-pairs" in err and "\n" not in err
