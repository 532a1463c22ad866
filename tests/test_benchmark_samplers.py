"""benchmarks/samplers.py: call counting, k-diffusion's rows on the same noise and sigmas as mmdiff's, and a tiny
end-to-end run writing the report and the plot."""

from __future__ import annotations

import pytest
import torch
from _helpers import load_benchmark

from mmdiff.core import GaussianMixture, karras_sigmas, sample


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("samplers")


def test_steps_never_exceed_the_nfe(bench):
    mixture = GaussianMixture.uneven(1.0)
    heun = bench.mmdiff_method("heun")
    assert bench.call_model(heun, mixture) == (2, -1)  # 2 * steps - 1 calls
    for method in (heun, bench.mmdiff_method(None), bench.diffusers_method("UniPCMultistepScheduler")):
        model = bench.call_model(method, mixture)
        for nfe in (5, 10):
            steps = bench.steps_for(model, nfe)
            calls = bench.calls_for(method, mixture, steps)
            assert calls <= nfe < bench.calls_for(method, mixture, steps + 1), (method.name, nfe, steps)


@pytest.mark.parametrize("function, ours", [("sample_euler", "euler"), ("sample_dpmpp_2m", "dpmpp_2m")])
def test_k_diffusion_rows_use_the_same_noise_and_sigmas(bench, function, ours):
    """k-diffusion's Euler / DPM-Solver++(2M) from the benchmark equal mmdiff's on the same Karras sigmas: the rows
    differ only by the solver, not by the starting noise or the sigma range."""
    k_sampling = bench.load_k_sampling()
    if k_sampling is None:
        pytest.skip("k-diffusion is not installed (optional, benchmark only)")
    mixture = GaussianMixture.uneven(0.1)
    lo, hi = bench.default_sigma_range(mixture)
    theirs = bench.k_method(k_sampling, function, {}).run(mixture.denoise, mixture, 64, 8)  # (64, 2)
    mine = sample(mixture.denoise, (64, 2), sampler=ours, seed=bench.SEED, sigmas=karras_sigmas(8, lo, hi, 7.0))
    torch.testing.assert_close(theirs.float(), mine, atol=1e-5, rtol=1e-4)


def test_quick_run_writes_tables_and_plot(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "SAMPLERS", {"euler": None, "heun": None})
    monkeypatch.setattr(bench, "DIFFUSERS", ("UniPCMultistepScheduler",))
    monkeypatch.setattr(bench, "K_SAMPLERS", {"sample_lms": {}})
    threads = torch.get_num_threads()
    try:
        bench.main(["--quick", "--n", "64", "--converged-steps", "8", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)  # main() sets the thread count for the whole process
    report = (tmp_path / "samplers.md").read_text()
    for row in ("| euler |", "| heun |", "| sample() defaults |", "| diffusers UniPCMultistep |"):
        assert report.count(row) == 1 + len(bench.QUICK_PROBLEMS), row  # the summary and one table per problem
    assert "k-diffusion lms" in report or "k-diffusion was not installed" in report
    assert "heun | " in report and "9 calls" in report  # heun at NFE 10: 5 steps, 9 calls
    assert "worst ratio at NFE 10" in report and "Floor (two true sets)" in report
    assert (tmp_path / "samplers.png").stat().st_size > 10_000
