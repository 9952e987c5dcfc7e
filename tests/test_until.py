"""Run until converged (``sampler.until`` / ``sample(until=...)``): the stop rule, its schedule,
budgets, resume, the progress bar's figures and the report line."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pnp_imaging import diagnostics, sample
from pnp_imaging.checkpoint import CheckpointConfig
from pnp_imaging.config import ConfigError, resolve_config
from pnp_imaging.convergence import ConvergenceMonitor, StopRule, check_due, running_figures
from pnp_imaging.samplers import run_chain
from pnp_imaging.samplers.base import resume

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_checkpoint import _assert_identical, _build  # noqa: E402
from test_sampling_api import _gaussian  # noqa: E402

IMAGE = str(Path(__file__).resolve().parent.parent / "data" / "cameraman.png")
RULE = {"ess": 100, "rhat": 1.01, "check_every": 25}


def _passes(summary, rule=RULE) -> bool:
    return not diagnostics.verdicts(summary, min_ess=rule["ess"], max_rhat=rule["rhat"])


def test_stops_at_the_first_check_that_passes_the_verdict():
    """The run stops at the first scheduled check where every traced quantity passes the very
    verdict of ``Posterior.converged`` (bulk and tail ESS, R̂); a fixed-length run to the same
    iteration is bit-identical and converged, one to the previous check is not."""
    problem, prior = _gaussian()
    kw = dict(n_burnin=50, chains=2)
    post = sample(problem, prior, "skrock", n_steps=5000, until=RULE, generator=torch.Generator().manual_seed(1), **kw)
    stop = post.summary["stop"]
    assert stop["reason"] == "converged" and stop["n_steps_max"] == 5000 and stop["until"]["ess"] == 100
    n = stop["iterations"]
    assert n < 5000 and check_due(n - 50, 25) and post.summary["n_steps"] == n
    assert post.converged and post.summary["ess_min"] >= 100 and post.summary["ess_tail_min"] >= 100
    fixed = sample(problem, prior, "skrock", n_steps=n, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(fixed.mmse, post.mmse) and fixed.summary["stop"]["reason"] == "n_steps"
    earlier = sample(problem, prior, "skrock", n_steps=n - 25, generator=torch.Generator().manual_seed(1), **kw)
    assert not _passes(earlier.diagnostics)


def test_budgets_stop_the_run_and_say_so():
    problem, prior = _gaussian()
    unreachable = {"ess": 1e9, "check_every": 25}
    post = sample(problem, prior, "skrock", n_steps=300, n_burnin=50, until=unreachable,
                  generator=torch.Generator().manual_seed(1))
    assert post.summary["stop"]["reason"] == "n_steps" and post.summary["n_steps"] == 300
    post = sample(problem, prior, "skrock", n_steps=10**6, n_burnin=50, until={**unreachable, "max_minutes": 0.01},
                  generator=torch.Generator().manual_seed(1))
    stop = post.summary["stop"]
    # (the verdict at the default thresholds may still pass on this small problem: only the unreachable
    # rule decides that the run stopped on budget)
    assert stop["reason"] == "max_minutes" and 0.6 <= stop["elapsed_s"] < 5 and stop["iterations"] < 10**6


def test_resume_continues_to_the_same_stop_bit_for_bit(tmp_path):
    """A run interrupted before converging (here: its cap) and resumed with the rule stops at the
    same iteration with the same state and statistics as an uninterrupted one; resuming the
    finished run takes no step. Elapsed time is summed over the resumes."""
    rule = StopRule.from_value(RULE)
    k, s, g = _build("skrock")
    ref = run_chain(k, s, n_steps=5000, n_burnin=40, thin=1, generator=g, monitor=ConvergenceMonitor(rule))
    assert ref.stop_reason == "converged" and ref.n_done < 5000
    k, s, g = _build("skrock")
    path = tmp_path / "ck.pt"
    first = run_chain(k, s, n_steps=ref.n_done // 2, n_burnin=40, thin=1, generator=g,
                      checkpoint=CheckpointConfig(path, 1000), monitor=ConvergenceMonitor(rule))
    assert first.stop_reason == "n_steps"
    again = resume(path, k, generator=torch.Generator(), n_steps=5000, monitor=ConvergenceMonitor(rule))
    assert again.stop_reason == "converged"
    _assert_identical(again, ref)
    assert again.elapsed_s > first.elapsed_s
    done = resume(path, k, generator=torch.Generator(), n_steps=5000, monitor=ConvergenceMonitor(rule))
    assert done.stop_reason == "converged" and done.timings["steps_this_call"] == 0 and done.n_done == ref.n_done


def test_check_schedule_doubles_with_the_run():
    due = [m for m in range(1, 200 * 10 + 1) if check_due(m, 10)]
    assert due[:3] == [10, 20, 30] and 390 in due and 400 in due and 410 not in due and 420 in due
    assert 800 in due and 820 not in due and 840 in due
    assert not check_due(0, 10) and not check_due(-5, 10)
    # checks per doubling of the run stay bounded: 20-40
    assert 19 <= sum(1 for m in due if 800 <= m < 1600) <= 41


@pytest.mark.parametrize("until, fragment", [
    ({"ess": 0}, "sampler.until.ess: must be a number > 0"),
    ({"ess": "many"}, "sampler.until.ess: must be a number > 0"),
    ({"rhat": 1.0}, "sampler.until.rhat: must be a number > 1"),
    ({"max_minutes": -3}, "sampler.until.max_minutes: must be a number > 0"),
    ({"check_every": 2.5}, "sampler.until.check_every: must be an integer >= 1"),
    ({"es": 100}, "sampler.until.es: unknown key (valid: ess, rhat, max_minutes, check_every)"),
    (30, "sampler.until: expected a mapping"),
])
def test_bad_until_fails_in_config_in_one_line(until, fragment):
    with pytest.raises(ConfigError) as exc:
        resolve_config({"image": IMAGE, "sampler": {"until": until}})
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_until_in_config_round_trips():
    cfg = resolve_config({"image": IMAGE, "sampler": {"until": {"ess": 200, "max_minutes": 30}}})
    assert cfg.sampler.until == StopRule(ess=200.0, max_minutes=30.0)
    assert cfg.sampler.to_dict()["until"] == {"ess": 200.0, "rhat": 1.01, "max_minutes": 30.0, "check_every": 50}
    assert resolve_config({"image": IMAGE}).sampler.until is None
    back = resolve_config({**cfg.to_dict(), "image": IMAGE})
    assert back.sampler.until == cfg.sampler.until


def test_progress_bar_shows_the_verdicts_figures():
    """The bar shows min over traced quantities of min(bulk, tail) ESS and max R̂ — the figures
    the verdict checks — computed on the kept draws at the last check; and an ETA."""
    from tqdm import tqdm

    from pnp_imaging.progress import SamplingProgress

    k, s, g = _build("skrock")
    monitor = ConvergenceMonitor(None, every=25)
    bar = tqdm(total=200, disable=False, file=open(os.devnull, "w"))
    res = run_chain(k, s, n_steps=200, n_burnin=40, thin=1, generator=g, monitor=monitor,
                    on_step=SamplingProgress(bar, monitor))
    assert res.stop_reason == "n_steps" and monitor.last["iteration"] == 190  # the bar shows the last check seen
    kept = {n: v[:, 40:190] for n, v in res.traces.items()}
    ess_min, rhat_max = running_figures(diagnostics.summarize(kept))
    want_ess = min(min(d["ess_bulk"], d["ess_tail"]) for d in diagnostics.summarize(kept).values())
    assert ess_min == pytest.approx(want_ess)
    fields = dict(item.split("=") for item in bar.postfix.split(", "))
    assert fields["ess_min"] == f"{ess_min:.0f}/100" and fields["rhat_max"] == f"{rhat_max:.3f}" and fields["eta"] != ""
    bar.close()


def test_report_says_how_the_run_stopped():
    from pnp_imaging.report import _stop_line

    rule = StopRule(max_minutes=30).to_dict()
    base = {"iterations": 800, "n_steps_max": 20000, "elapsed_s": 12.0, "until": rule}
    assert "stopped converged" in _stop_line({"stop": {**base, "reason": "converged"}})[0]
    assert "stopped on budget</b> (time" in _stop_line({"stop": {**base, "reason": "max_minutes"}})[0]
    assert "stopped on budget</b> (iterations" in _stop_line({"stop": {**base, "reason": "n_steps"}})[0]
    assert _stop_line({"stop": {**base, "reason": "n_steps", "until": None}}) == []
    assert np.isnan(running_figures({"a": {"ess_bulk": np.nan, "ess_tail": 3.0, "rhat": 1.0}})[0])


def test_run_from_config_reports_the_stop(tmp_path):
    """``pnp_imaging.run`` passes ``sampler.until`` through: the summary and the HTML report say
    how the run ended (here on budget: a tiny image cannot reach ESS 1e6 in 12 steps)."""
    import json

    import pnp_imaging
    from test_cli import _tiny_config

    cfg = _tiny_config(tmp_path, n_steps=12, until={"ess": 1e6, "check_every": 2})
    post = pnp_imaging.run(str(cfg), out_dir=tmp_path / "out", progress=False)
    stop = json.loads((tmp_path / "out" / "summary.json").read_text())["stop"]
    assert stop["reason"] == "n_steps" and stop["iterations"] == 12 and stop["until"]["ess"] == 1e6
    assert post.summary["stop"] == stop
    assert "stopped on budget</b> (iterations" in (tmp_path / "out" / "report.html").read_text()


def test_sample_stopped_on_budget_resumes_with_a_larger_cap(tmp_path):
    problem, prior = _gaussian()
    kw = dict(n_burnin=50, chains=2, until=RULE, checkpoint=tmp_path / "ck.pt")
    ref = sample(problem, prior, "skrock", n_steps=5000, generator=torch.Generator().manual_seed(1), **kw)
    n = ref.summary["stop"]["iterations"]
    short = sample(problem, prior, "skrock", n_steps=n // 2, generator=torch.Generator().manual_seed(1), **kw)
    assert short.summary["stop"]["reason"] == "n_steps"
    more = sample(problem, prior, "skrock", n_steps=5000, generator=torch.Generator().manual_seed(1), resume=True, **kw)
    assert more.summary["stop"]["reason"] == "converged" and more.summary["stop"]["iterations"] == n
    assert torch.equal(more.mmse, ref.mmse) and torch.equal(more.upper, ref.upper)
