"""benchmarks/prompt_response.py: how much a prompt word changes a text run's denoiser, per noise level."""

from __future__ import annotations

import subprocess
import sys

from _helpers import BENCHMARKS, load_benchmark


def test_same_prompts_respond_zero_and_different_ones_do_not(doc_runs):
    bench = load_benchmark("prompt_response")
    same = ("a slow sine melody", "a slow sine melody")
    other = ("a slow sine melody", "a fast square melody in a high register")
    result, checkpoint = bench.prompt_response(doc_runs / "music_text", [same, other], n=4, sigmas=(10.0, 0.1))
    assert checkpoint.is_dir() and set(result) == {same, other}
    assert result[same] == [0.0, 0.0]
    assert all(value > 0 for value in result[other])


def test_cli_writes_the_table_and_rejects_a_pair_without_two_prompts(doc_runs, tmp_path):
    run = doc_runs / "music_text"
    pair = "a slow sine melody|a fast sine melody"
    cmd = [sys.executable, "prompt_response.py", str(run), "--n", "2", "--out", str(tmp_path), "--pair", pair]
    subprocess.run(cmd, cwd=BENCHMARKS, check=True, timeout=300, capture_output=True)
    rows = [line for line in (tmp_path / "prompt_response_music_text.md").read_text().splitlines() if line[:2] == "| "]
    assert rows[0].startswith("| prompt A | prompt B | sigma 10 |") and len(rows) == 2
    assert rows[1].startswith("| a slow sine melody | a fast sine melody | ")

    bad = subprocess.run([*cmd[:-1], "just one prompt"], cwd=BENCHMARKS, timeout=300, capture_output=True, text=True)
    assert bad.returncode == 2 and "expected two prompts split by" in bad.stderr


def test_report_name_names_the_run_and_the_checkpoint(tmp_path):
    bench = load_benchmark("prompt_response")
    checkpoint = tmp_path / "my_run" / "checkpoints" / "step_000500"
    checkpoint.mkdir(parents=True)
    assert bench.report_name(tmp_path / "my_run") == "my_run"
    assert bench.report_name(checkpoint) == "my_run_step_000500"
