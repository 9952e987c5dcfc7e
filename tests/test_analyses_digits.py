"""The digits toolkit: fixed split, shipped classifier (sha256, accuracy), sample evaluation."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pnp_imaging.analyses import digits


def test_split_is_fixed_disjoint_and_complete():
    tr, te, al = (digits.load_digits_images(s) for s in ("train", "test", "all"))
    assert tr.shape == (1438, 1, 8, 8) and te.shape == (359, 1, 8, 8) and al.shape == (1797, 1, 8, 8)
    assert tr.dtype == torch.float32 and float(al.min()) == 0.0 and float(al.max()) == 1.0
    rows = lambda x, y: sorted(tuple(r) + (int(c),) for r, c in zip(x.reshape(len(x), -1).tolist(), y))  # noqa: E731
    lab = {s: digits.load_digits_labels(s) for s in ("train", "test", "all")}
    assert rows(torch.cat([tr, te]), torch.cat([lab["train"], lab["test"]])) == rows(al, lab["all"])  # a partition
    torch.testing.assert_close(digits.load_digits_images("test", seed=0), te)
    assert not torch.equal(digits.load_digits_images("test", seed=1), te)
    with pytest.raises(ValueError, match="split"):
        digits.load_digits_images("valid")


def test_shipped_classifier_is_accurate_and_sha_checked(tmp_path):
    model = digits.load_digit_classifier()
    assert digits.classifier_accuracy(model, "test") >= 0.95
    src = digits._weights_dir(None)[1]
    shutil.copy(src.parent / "digits_classifier.pt", tmp_path / "digits_classifier.pt")
    data = json.loads(src.read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({"classifiers": data["classifiers"]}))
    digits.load_digit_classifier(manifest=tmp_path / "manifest.json")
    with open(tmp_path / "digits_classifier.pt", "ab") as f:
        f.write(b"0")
    with pytest.raises(ValueError, match="corrupt"):
        digits.load_digit_classifier(manifest=tmp_path / "manifest.json")
    with pytest.raises(FileNotFoundError, match="digits_models.py"):
        digits.load_digit_classifier(manifest=tmp_path / "absent.json")


def test_frechet_distance_matches_the_closed_form():
    g = np.random.default_rng(0)
    a = torch.from_numpy(g.normal(size=(400, 3)) @ np.diag([1.0, 2.0, 0.5]))
    b = torch.from_numpy(g.normal(size=(500, 3)) + np.array([1.0, 0.0, -2.0]))
    from scipy.linalg import sqrtm

    ca, cb = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    diff = a.numpy().mean(0) - b.numpy().mean(0)
    ref = diff @ diff + np.trace(ca + cb - 2 * np.real(sqrtm(ca @ cb)))
    assert digits.frechet_distance(a, b) == pytest.approx(ref, rel=1e-9)
    assert digits.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_evaluate_samples_on_data_and_on_noise():
    model = digits.load_digit_classifier()
    test = digits.load_digits_images("test")
    ev = digits.evaluate_samples(test[:, 0].numpy(), classifier=model)  # (m, 8, 8) numpy accepted
    assert ev["n_samples"] == 359 and ev["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    assert abs(ev["memorised_fraction"] - 0.05) < 0.01 and ev["mean_confidence"] > 0.95
    assert sum(ev["class_counts"]) == 359 and ev["tv_to_train_labels"] < 0.1
    copied = digits.evaluate_samples(digits.load_digits_images("train")[:200], classifier=model)
    assert copied["memorised_fraction"] == 1.0 and copied["nn_train_median"] == 0.0
    noise = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ev_noise = digits.evaluate_samples(noise, classifier=model)
    assert ev_noise["frechet_distance"] > 10 * copied["frechet_distance"] and ev_noise["memorised_fraction"] == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        digits.evaluate_samples(noise * 2, classifier=model)
    with pytest.raises(ValueError, match="shape"):
        digits.evaluate_samples(torch.rand(5, 64), classifier=model)


def test_digits_recipe_trains_on_whole_train_digits_only():
    from denoisers_zoo.data import DigitsSampler
    from denoisers_zoo.train import ROOT, _training_sampler, load_recipe

    r = load_recipe(ROOT / "recipes" / "digits_edm.yaml")
    assert r["data"]["source"] == "sklearn.digits" and r["data"]["train"] == []
    sampler = _training_sampler(r["data"], 1)
    assert isinstance(sampler, DigitsSampler)
    batch = sampler.sample(64, torch.Generator().manual_seed(0))
    train = {tuple(v) for v in digits.load_digits_images("train").reshape(-1, 64).tolist()}
    assert batch.shape == (64, 1, 8, 8) and all(tuple(v) in train for v in batch.reshape(-1, 64).tolist())
