"""benchmarks/step_intervals.py: each refined list is the default with one interval split, and refining the interval
that holds the mixture's error removes most of it."""

from __future__ import annotations

import pytest
import torch
from _helpers import load_benchmark

from mmdiff.core.gmm import known_answer_mixtures
from mmdiff.core.spacing import exponential_sigmas


def test_refined_splits_one_interval_and_keeps_the_rest():
    bench = load_benchmark("step_intervals")
    base = exponential_sigmas(10, bench.SIGMA_MIN, bench.SIGMA_MAX)
    for j in range(9):
        sigmas = bench.refined(10, j, substeps=4)  # 3 sigmas inserted
        assert len(sigmas) == len(base) + 3 and (sigmas[:-1].diff() < 0).all() and sigmas[-1] == 0
        assert torch.equal(sigmas[: j + 1], base[: j + 1]) and torch.equal(sigmas[j + 4 :], base[j + 1 :])
        inner = sigmas[j : j + 5].log().diff()  # the 4 substeps, even in log-sigma
        assert torch.allclose(inner, inner.mean().expand(4), rtol=1e-6)
    with pytest.raises(ValueError, match="denoising step"):
        bench.refined(10, 9)
    assert len(bench.lists()) == 10


def test_refining_the_decisive_interval_removes_most_of_the_error():
    bench = load_benchmark("step_intervals")
    uneven = known_answer_mixtures()["uneven x1"]
    distance = lambda sigmas: bench.mixture_distance(uneven, sigmas, seed=0, n=8192)  # noqa: E731
    default = distance(exponential_sigmas(10, bench.SIGMA_MIN, bench.SIGMA_MAX))
    converged = distance(exponential_sigmas(60, bench.SIGMA_MIN, bench.SIGMA_MAX))
    decisive = distance(bench.refined(10, 4))  # 0.68 -> 0.29 sigma_data (benchmarks/results/step_intervals.md)
    assert default > 1.5 * converged
    assert decisive - converged < 0.5 * (default - converged)
    assert distance(bench.refined(10, 0)) > decisive  # the first interval holds none of it
