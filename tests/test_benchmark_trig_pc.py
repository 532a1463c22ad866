"""benchmarks/trig_pc.py: the first-step sigma list, and a quick end-to-end run writing its table."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys

from _helpers import BENCHMARKS, load_benchmark


def test_quick_run_writes_every_row_and_the_jump_list_is_as_documented(tmp_path):
    bench = load_benchmark("trig_pc")
    sigmas = bench.sigmas(10, 0.5, 80.0, 2.0).tolist()
    assert len(sigmas) == 11 and sigmas[0] == 40.0 and abs(sigmas[1] - 1.0) < 1e-12 and sigmas[-1] == 0.0
    assert abs(sigmas[-2] - 0.005) < 1e-12 and all(a > b for a, b in itertools.pairwise(sigmas))

    subprocess.run(
        [sys.executable, "trig_pc.py", "--quick", "--out", str(tmp_path)], cwd=BENCHMARKS, check=True, timeout=300
    )
    rows = [
        line
        for line in (tmp_path / "trig_pc.md").read_text().splitlines()
        if line.startswith("| unipc") or line.startswith("| trig_pc")
    ]
    assert len(rows) == 6
    for row in rows:  # at 20 calls every row is near its own converged distance (measured 1.00-1.06x)
        ratios = [float(r) for r in re.findall(r"([0-9.]+)x", row)]
        assert len(ratios) == 3 and ratios[2] < 1.3, row
