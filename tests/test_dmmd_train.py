"""DMMD end to end at toy scale (seeded, CPU, well under a minute): training lowers the loss, a
resumed run equals an uninterrupted one, flow samples land nearer the data than their initial
noise; the shipped model and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pnp_imaging.analyses.digits import load_digits_images
from pnp_imaging.dmmd.recipe import check_recipe
from pnp_imaging.dmmd.store import DMMDModel, install, load_model, read_manifest, sample
from pnp_imaging.dmmd.train import train


def _recipe(steps: int) -> dict:
    return check_recipe({
        "name": "dmmd_toy", "data": {"source": "digits", "split": "train", "seed": 0},
        "arch": {"width": 128, "depth": 2, "features": 32, "t_dim": 16},
        "objective": {"levels": 4, "batch": 32, "t_min": 0.001, "gp_weight": 10.0},
        "optim": {"lr": 2e-3, "lr_min": 2e-4}, "steps": steps, "seed": 1, "threads": 1, "checkpoint_every": 40,
        "log_every": 20, "flow": {"levels": 20, "steps_per_level": 5, "step_size": 0.2, "t_min": 0.001, "batch": 64}})


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dmmd_toy")
    images = load_digits_images("train")
    return train(_recipe(300), out, data=images, progress=False), out, images


def test_training_loss_decreases(toy_run):
    result, _, _ = toy_run
    first, last = np.mean(result.losses[:20]), np.mean(result.losses[-20:])
    # the loss starts near +λ·1 (random features: MMD² ≈ 0, witness slope ≈ 0) and must end well below
    assert result.steps_done == 300 and last < first - 0.5, (first, last)


def test_resumed_training_equals_uninterrupted(tmp_path, monkeypatch):
    """Interrupted after step 50 (checkpoint at 40), resumed: losses and weights equal an
    uninterrupted run's exactly (network, Adam state, generator and step restored)."""
    import pnp_imaging.dmmd.train as train_module

    images = load_digits_images("train")[:300]
    full = train(_recipe(80), tmp_path / "full", data=images, progress=False)
    calls = {"n": 0}
    real_loss = train_module.dmmd_loss

    def interrupted_loss(*args, **kw):
        calls["n"] += 1
        if calls["n"] > 50:
            raise KeyboardInterrupt
        return real_loss(*args, **kw)

    monkeypatch.setattr(train_module, "dmmd_loss", interrupted_loss)
    with pytest.raises(KeyboardInterrupt):
        train(_recipe(80), tmp_path / "part", data=images, progress=False)
    monkeypatch.setattr(train_module, "dmmd_loss", real_loss)
    resumed = train(_recipe(80), tmp_path / "part", data=images, resume=True, progress=False)
    assert resumed.losses == full.losses
    for (k, a), b in zip(full.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), k


def test_flow_samples_land_nearer_the_data_than_their_initial_noise(toy_run, tmp_path):
    _, out, images = toy_run
    install(out, weights_dir=tmp_path)
    model = load_model("dmmd_toy", manifest=tmp_path / "manifest.json")
    train_flat = images.reshape(len(images), -1)
    nn = lambda x: torch.cdist(x.reshape(len(x), -1), train_flat).min(1).values.mean()  # noqa: E731
    tiny = sample(model, 64, seed=0, step_size=1e-9, levels=1, steps_per_level=1)  # = the initial noise, clamped
    flowed = sample(model, 64, seed=0)
    assert flowed.shape == (64, 8, 8) and 0 <= float(flowed.min()) and float(flowed.max()) <= 1
    # mean nearest-train distance: noise about 3.5 (pixel scale), held-out digits about 1.1
    assert float(nn(flowed)) < 0.7 * float(nn(tiny)), (float(nn(flowed)), float(nn(tiny)))
    assert torch.equal(flowed, sample(model, 64, seed=0))


@pytest.mark.skipif("dmmd_digits" not in read_manifest()["models"], reason="not shipped yet")
def test_shipped_model_loads_and_is_sha256_checked(tmp_path):
    entry = read_manifest()["models"]["dmmd_digits"]
    model = load_model("dmmd_digits")
    assert isinstance(model, DMMDModel) and model.side == 8 and len(model.levels) == entry["flow"]["levels"]
    bad = tmp_path / "weights"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps({"models": {"dmmd_digits": entry}}))
    (bad / entry["file"]).write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="sha256"):
        load_model("dmmd_digits", manifest=bad / "manifest.json")


def test_cli_sample_writes_64_digits_in_unit_range(tmp_path):
    from pnp_imaging.cli import main

    out = tmp_path / "samples.npy"
    assert main(["dmmd", "sample", "--n", "64", "--seed", "0", "--out", str(out), "--quiet",
                 "--levels", "10", "--steps-per-level", "1"]) == 0
    x = np.load(out)
    assert x.shape == (64, 8, 8) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("args, message", [
    (["--n", "0"], "--n"), (["--step-size", "-1"], "--step-size"), (["--model", "nope"], "unknown model"),
])
def test_cli_sample_rejects_bad_input_with_one_line(tmp_path, capsys, args, message):
    from pnp_imaging.cli import main

    assert main(["dmmd", "sample", "--out", str(tmp_path / "s.npy"), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_evaluate_writes_report_and_ranks_baselines(toy_run, tmp_path):
    from pnp_imaging.dmmd.evaluate import evaluate_model, write_report

    _, out, _ = toy_run
    install(out, weights_dir=tmp_path)
    model = load_model("dmmd_toy", manifest=tmp_path / "manifest.json")
    results, sets = evaluate_model(model, n=64, seed=0)
    assert list(results) == list(sets) == ["dmmd_toy", "test_digits", "train_digits", "gaussian_noise"]
    report = write_report(tmp_path / "eval", model, results, sets, {"n": 64, "seed": 0})
    assert report.is_file() and (tmp_path / "eval" / "samples.png").is_file()
    assert all((tmp_path / "eval" / f"grid_{name}.png").is_file() for name in sets)
    payload = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert np.load(tmp_path / "eval" / "samples.npy").shape == (64, 8, 8)
    fd = {k: v["frechet_distance"] for k, v in payload["results"].items()}
    assert fd["test_digits"] < fd["train_digits"] < fd["dmmd_toy"] < fd["gaussian_noise"], fd


@pytest.mark.parametrize("argv", [["dmmd"], ["dmmd", "train"], ["dmmd", "sample"], ["dmmd", "evaluate"]])
def test_help_on_every_dmmd_subcommand(argv, capsys):
    from pnp_imaging.cli import main

    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0 and "usage: pnp-imaging dmmd" in capsys.readouterr().out
