"""Benchmarks (speed, memory, accuracy-per-second). Run ``python -m bench.run_all [--quick]``.

Project rule: speed and memory are measured here (JSON output in ``bench/results/``, ratios
against an anchor measured in the same run), never by timed unit tests.
"""
