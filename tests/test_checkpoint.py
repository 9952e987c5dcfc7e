"""Checkpoint/resume is bit-exact (in process, after SIGINT and after SIGKILL of a subprocess);
divergence guard; atomic writes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from denoisers_zoo.exact import GaussianDenoiser
from operators.identity import Identity
from operators.noise import GaussianNoise
from pnp_imaging.checkpoint import EXIT_INTERRUPTED, CheckpointConfig, load_checkpoint, save_atomic
from pnp_imaging.samplers.base import resume
from pnp_imaging.priors import ScorePrior
from pnp_imaging.problem import Problem
from pnp_imaging.samplers import DivergenceError, build_kernel, dispersed_init, run_chain, skrock, ula

TESTS = Path(__file__).resolve().parent
RUN = dict(n_steps=400, n_burnin=100, thin=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _build(sampler="ula", step_scale=1.0, denoiser=None, projected=False):
    """Small Gaussian problem, 2 chains; returns (kernel, state, generator)."""
    g = torch.Generator().manual_seed(11)
    den = denoiser or GaussianDenoiser.isotropic(0.5, 0.04, (1, 8, 8))
    x_true = torch.full((1, 1, 8, 8), 0.5, dtype=torch.float64)
    y = x_true + 0.1 * torch.randn(x_true.shape, generator=g, dtype=torch.float64)
    problem = Problem(operator=Identity(), noise=GaussianNoise(0.1), y=y)
    prior = ScorePrior(den, 0.01, lipschitz=1.0)
    if sampler == "ula":
        p = ula.make_params(problem, prior)
        p = ula.make_params(problem, prior, step_size=p.step_size * step_scale,
                            clip=(0.0, 1.0) if projected else (-1.0, 2.0), projected=projected)
        k = ula.kernel(problem, prior, p)
    elif sampler == "skrock":
        k = skrock.kernel(problem, prior, skrock.make_params(problem, prior, n_stages=5))
    else:  # a likelihood-exact family: its state carries the last noise draw (LM)
        k = build_kernel(sampler, problem, prior)
    x0 = dispersed_init(problem.back_projection(), 2, spread=0.1, generator=g)
    return k, k.init(x0), g


def _assert_identical(a, b):
    assert a.n_done == b.n_done and a.n_kept == b.n_kept
    for fa, fb in zip(a.state, b.state):
        if isinstance(fa, torch.Tensor):
            assert torch.equal(fa, fb)
        else:
            assert fa == fb
    sa, sb = a.stats.state_dict(), b.stats.state_dict()
    assert sa["moments"]["count"] == sb["moments"]["count"]
    assert torch.equal(sa["moments"]["mean"], sb["moments"]["mean"])
    assert torch.equal(sa["moments"]["m2"], sb["moments"]["m2"])
    assert torch.equal(sa["quantiles"]["q"], sb["quantiles"]["q"])
    for k in sa["multiscale"]:
        assert torch.equal(sa["multiscale"][k]["mean"], sb["multiscale"][k]["mean"])
        assert torch.equal(sa["multiscale"][k]["m2"], sb["multiscale"][k]["m2"])
    assert a.traces.keys() == b.traces.keys()
    for k in a.traces:
        assert np.array_equal(a.traces[k], b.traces[k], equal_nan=True), k
    assert torch.equal(a.slow_direction, b.slow_direction)


@pytest.fixture(scope="module")
def reference():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    k, st, g = _build()
    res = run_chain(k, st, generator=g, **RUN)
    torch.set_num_threads(n)
    return res


@pytest.mark.parametrize("sampler", ["ula", "skrock", "pnp-lm-exp"])
def test_interrupt_and_resume_in_process_is_bitwise_identical(tmp_path, sampler):
    k, st, g = _build(sampler)
    ref = run_chain(k, st, generator=g, **RUN)
    k, st, g = _build(sampler)
    path = tmp_path / "run.ckpt"

    def on_step(i, state, info):
        if i == 137:
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C: handled at the end of the iteration

    part = run_chain(k, st, generator=g, on_step=on_step, checkpoint=CheckpointConfig(path, 50), **RUN)
    assert part.status == "interrupted" and part.n_done == 137 and part.checkpoint_saved
    assert load_checkpoint(path)["run"]["iteration"] == 137
    k2, _, _ = _build(sampler)
    g2 = torch.Generator().manual_seed(999)  # state overwritten from the checkpoint
    res = resume(path, k2, generator=g2)
    assert res.status == "completed"
    _assert_identical(ref, res)
    assert not list(tmp_path.glob("*.tmp*"))


def test_resume_can_extend_the_run(tmp_path, reference):
    k, st, g = _build()
    path = tmp_path / "run.ckpt"
    first = run_chain(k, st, generator=g, checkpoint=CheckpointConfig(path, 1000), **{**RUN, "n_steps": 250})
    assert first.n_done == 250 and load_checkpoint(path)["run"]["iteration"] == 250
    res = resume(path, _build()[0], generator=torch.Generator(), n_steps=400)
    _assert_identical(reference, res)


_CHILD = """
import sys, time, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
import test_checkpoint as T
from pnp_imaging.checkpoint import CheckpointConfig, EXIT_INTERRUPTED
from pnp_imaging.samplers import run_chain
k, st, g = T._build()
res = run_chain(k, st, generator=g, checkpoint=CheckpointConfig({path!r}, 50),
                on_step=lambda i, s, info: time.sleep(0.01), **T.RUN)
sys.exit(EXIT_INTERRUPTED if res.status == "interrupted" else 0)
"""


def _spawn_and_signal(path: Path, sig: int, min_iteration: int = 100) -> int:
    code = _CHILD.format(tests=str(TESTS), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=TESTS.parent)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"child exited early with {proc.returncode}")
            if path.exists():
                try:
                    it = load_checkpoint(path)["run"]["iteration"]
                except Exception:  # noqa: BLE001 - racing with os.replace is impossible, but be safe
                    it = 0
                if it >= min_iteration:
                    break
            time.sleep(0.02)
        else:
            pytest.fail("child made no progress")
        os.kill(proc.pid, sig)
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_resume_after_sigkill_of_a_subprocess_is_bitwise_identical(tmp_path, reference):
    path = tmp_path / "run.ckpt"
    rc = _spawn_and_signal(path, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    saved = load_checkpoint(path)
    assert 100 <= saved["run"]["iteration"] < RUN["n_steps"] and saved["run"]["iteration"] % 50 == 0
    res = resume(path, _build()[0], generator=torch.Generator())
    _assert_identical(reference, res)


def test_sigint_to_a_subprocess_saves_and_exits_cleanly(tmp_path, reference):
    path = tmp_path / "run.ckpt"
    rc = _spawn_and_signal(path, signal.SIGINT)
    assert rc == EXIT_INTERRUPTED
    it = load_checkpoint(path)["run"]["iteration"]
    assert 100 <= it < RUN["n_steps"]
    res = resume(path, _build()[0], generator=torch.Generator())
    _assert_identical(reference, res)
    assert not list(tmp_path.glob("*.tmp*"))


def test_resume_rejects_a_different_kernel(tmp_path):
    k, st, g = _build()
    path = tmp_path / "run.ckpt"
    run_chain(k, st, generator=g, checkpoint=CheckpointConfig(path, 10), n_steps=20, n_burnin=0, thin=1)
    with pytest.raises(ValueError, match="step_size"):
        resume(path, _build(step_scale=0.5)[0], generator=torch.Generator())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resume(tmp_path / "nope.ckpt", k, generator=torch.Generator())
    with pytest.raises(ValueError, match="every"):
        CheckpointConfig(path, 0)


def test_divergence_guard_stops_within_one_iteration_and_keeps_last_good_checkpoint(tmp_path):
    k, st, g = _build(step_scale=60.0)  # δ h ≈ 3 > 2: ULA is unstable, |x| doubles per step
    # reference trajectory with the same seed, stepping by hand
    k_ref, s_ref, g_ref = _build(step_scale=60.0)
    first_bad = None
    for i in range(1, 200):
        s_ref, _ = k_ref.step(s_ref, generator=g_ref)
        if not bool(s_ref.x.abs().max() <= 1e3):
            first_bad = i
            break
    assert first_bad is not None
    path = tmp_path / "run.ckpt"
    with pytest.raises(DivergenceError) as err:
        run_chain(k, st, generator=g, checkpoint=CheckpointConfig(path, 3), n_steps=200, n_burnin=0, thin=1,
                  max_nll_rise=None)  # this test is about the |x| guard
    msg = str(err.value)
    assert err.value.iteration == first_bad
    assert "step size" in msg and "eps" in msg and "\n" not in msg
    assert err.value.checkpoint_path == str(path)
    saved = load_checkpoint(path)
    assert saved["run"]["iteration"] == 3 * ((first_bad - 1) // 3)
    assert torch.isfinite(saved["state"]["x"]).all()


def test_loglik_guard_catches_a_bounded_blow_up():
    """Projected ULA at 60x the step: the state stays in [0, 1] (the |x| guard never fires) but
    oscillates between the box faces, far from the data; the log-likelihood guard stops it at
    the first iteration where -log p(y|x) exceeds its running minimum by 2 per measurement + 25
    (the default max_nll_rise = 2)."""
    k_ref, s_ref, g_ref = _build(step_scale=60.0, projected=True)
    m = k_ref.problem.y[0].numel()
    best = torch.full((2,), float("inf"), dtype=torch.float64)
    first_bad = None
    for i in range(1, 300):
        s_ref, _ = k_ref.step(s_ref, generator=g_ref)
        assert float(s_ref.x.abs().max()) <= 1.0
        nll = k_ref.problem.data_nll(s_ref.x).to(torch.float64)
        best = torch.minimum(best, nll)
        if float((nll - best).max()) > 2.0 * m + 25.0:
            first_bad = i
            break
    assert first_bad is not None and first_bad > 1
    k, st, g = _build(step_scale=60.0, projected=True)
    with pytest.raises(DivergenceError, match="per measurement") as err:
        run_chain(k, st, generator=g, n_steps=300, n_burnin=0, thin=1)
    assert err.value.iteration == first_bad
    assert "\n" not in str(err.value) and "step size" in str(err.value)
    # the same chain at the sound step never trips the guard (the healthy-chain tests rely on this too)
    k, st, g = _build(projected=True)
    run_chain(k, st, generator=g, n_steps=300, n_burnin=0, thin=1)
    with pytest.raises(ValueError, match="max_nll_rise"):
        run_chain(k, st, generator=g, n_steps=3, n_burnin=0, thin=1, max_nll_rise=0.0)


class NaNAfter(torch.nn.Module):
    name = "nan_after"
    lipschitz = 1.0

    def __init__(self, inner, n):
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x, sigma):
        self.calls += 1
        out = self.inner(x, sigma)
        return out * float("nan") if self.calls > self.n else out


def test_divergence_guard_on_nan():
    den = NaNAfter(GaussianDenoiser.isotropic(0.5, 0.04, (1, 8, 8)), 10)
    k, st, g = _build(denoiser=den)
    with pytest.raises(DivergenceError, match="NaN/Inf") as err:
        run_chain(k, st, generator=g, n_steps=50, n_burnin=0, thin=1)
    # call 1 is init; call 11 (NaN drift) is evaluated at x_10, so x_11 is the first NaN state
    assert err.value.iteration == 11 and err.value.checkpoint_path is None


def test_save_atomic_never_leaves_a_partial_file(tmp_path):
    path = tmp_path / "x.ckpt"
    save_atomic(path, {"format": 1, "a": torch.arange(3)})
    with pytest.raises(Exception):
        save_atomic(path, {"format": 1, "bad": lambda: 0})  # unpicklable: torch.save fails
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ckpt"]
