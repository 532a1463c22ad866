"""benchmarks/sigma_lists.py: the log-linear resampling of a fitted list, and the fitted lists' stated properties."""

from __future__ import annotations

import torch
from _helpers import load_benchmark

from mmdiff.core.gmm import known_answer_mixtures
from mmdiff.core.spacing import exponential_sigmas


def test_interpolated_keeps_the_list_at_its_length_and_resamples_it_in_log_sigma():
    bench = load_benchmark("sigma_lists")
    same = bench.interpolated(bench.FITTED, 10)
    assert torch.allclose(same, torch.tensor([*bench.FITTED, 0.0], dtype=torch.float64))
    longer = bench.interpolated(bench.FITTED, 19)  # every second value is an original one
    assert torch.allclose(longer[:-1:2], same[:-1]) and longer[-1] == 0
    assert torch.allclose(longer[1], (same[0] * same[1]).sqrt())  # midway in log-sigma
    assert (longer[:-1].diff() < 0).all()


def test_fitted_lists_hold_what_the_report_says():
    bench = load_benchmark("sigma_lists")
    default = exponential_sigmas(10, bench.SIGMA_MIN, bench.SIGMA_MAX)
    assert bench.FITTED_BELOW_TOP[:3] == [round(float(v), 4) for v in default[:3]]  # the default's top three kept
    cap = bench.anisotropic_error(default)
    assert bench.anisotropic_error(torch.tensor([*bench.FITTED, 0.0], dtype=torch.float64)) <= cap + 1e-4
    uneven = known_answer_mixtures()["uneven x1"]
    fitted = bench.mixture_distance(uneven, bench.interpolated(bench.FITTED, 10), seed=0, n=8192)
    assert fitted < bench.mixture_distance(uneven, default, seed=0, n=8192)


def test_fit_gives_ten_step_lists_that_keep_their_top():
    bench = load_benchmark("sigma_lists")
    for top in ([bench.SIGMA_MAX], bench.FITTED_BELOW_TOP[:3]):
        fitted = bench.fit(top, cap=None, evaluations=3, n=512)
        assert len(fitted) == 10 and fitted[: len(top)] == top
        assert (torch.tensor(fitted).diff() < 0).all() and fitted[-1] >= bench.SIGMA_MIN - 1e-9
