"""benchmarks/jump_anisotropy.py: its closed-form reference, and the long first step's error on anisotropic data."""

from __future__ import annotations

import sys
from pathlib import Path

from mmdiff.core.spacing import exponential_sigmas, jump_sigmas

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import jump_anisotropy
    finally:
        sys.path.remove(str(BENCHMARKS))
        sys.modules.pop("jump_anisotropy", None)
    return jump_anisotropy


def test_reference_is_the_converged_solution_and_the_jump_is_exact_only_when_isotropic():
    bench = _bench()
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
