"""benchmarks/jump_anisotropy.py: its closed-form reference, and the long first step's error on anisotropic data."""

from __future__ import annotations

from _helpers import load_benchmark

from mmdiff.core.spacing import exponential_sigmas, jump_sigmas


def test_reference_is_the_converged_solution_and_the_jump_is_exact_only_when_isotropic():
    bench = load_benchmark("jump_anisotropy")
    data = bench.gaussians()
    many = exponential_sigmas(200, bench.SIGMA_MIN, 20.0)
    for mean, lam in data.values():  # a converged sampler lands on the closed-form reference
        assert bench.error(mean, lam, "unipc", many) < 1e-3
    jump = jump_sigmas(10, bench.SIGMA_MIN, 2.0, 80.0)
    assert bench.error(*data["isotropic"], "trig_pc", jump, order=3) < 1e-4
    anisotropic = bench.error(*data["anisotropic"], "trig_pc", jump, order=3)
    longer = bench.error(*data["anisotropic"], "trig_pc", jump_sigmas(40, bench.SIGMA_MIN, 2.0, 80.0), order=3)
    assert anisotropic > 0.05 and longer > 0.05  # more steps below the jump do not remove its error
    assert bench.error(*data["anisotropic"], "trig_pc", exponential_sigmas(40, bench.SIGMA_MIN, 20.0)) < 0.01
