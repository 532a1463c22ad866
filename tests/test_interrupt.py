"""Ctrl-C and SIGTERM keep the work: the run finishes its step, writes a checkpoint, prints one line with the command
that resumes, and exits with 128 + the signal; resuming then ends with the weights of an uninterrupted run. Under two
(gloo) processes a signal that reaches only one of them stops both after the same step."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training import make_trainer

from mmdiff.checkpoints import newest_checkpoint
from mmdiff.train.interrupt import SignalStop, TrainingInterrupted

TESTS = Path(__file__).resolve().parent
STEPS = 40
# a tiny points run whose steps take a quarter of a second, so that the signal arrives mid-run
CHILD = """
import logging, os, sys, time
sys.path.insert(0, {tests!r})
from test_training import make_trainer

class Slow:
    def __init__(self, inner):
        self.inner = inner
    def __getattr__(self, name):
        return getattr(self.inner, name)
    def __call__(self, *args, **kwargs):
        time.sleep(0.25)
        return self.inner(*args, **kwargs)

rank = int(os.environ.get("RANK", "0"))
logging.basicConfig(level=logging.INFO, format="%(message)s")
logging.getLogger("mmdiff.train").info("rank %d pid %d", rank, os.getpid())
trainer = make_trainer(sys.argv[1], max_steps={steps}, checkpoint_every=1000, sample_every=0, log_every=1,
                       batch_size=int(sys.argv[2]), num_workers=int(sys.argv[3]) if len(sys.argv) > 3 else 0)
trainer.objective = Slow(trainer.objective)
try:
    trainer.fit()
except SystemExit as stop:
    print(f"rank {{rank}} stopped after step {{getattr(stop, 'step', None)}}", flush=True)
    raise
"""


def start(args, tmp_path, own_group=False):
    """The child run; ``own_group``: in a process group of its own (its pid is the group's), as a shell job is."""
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(TESTS), steps=STEPS))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, *args(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=own_group,
    )


def read_until(proc, pattern: str, lines: list[str]) -> re.Match:
    for line in proc.stdout:
        lines.append(line)
        if m := re.search(pattern, line):
            return m
    raise AssertionError("the child ended before printing " + pattern + ":\n" + "".join(lines))


def assert_same_weights(a: Path, b: Path):
    one = load_file(newest_checkpoint(a) / "model.safetensors")
    two = load_file(newest_checkpoint(b) / "model.safetensors")
    for k in one:
        torch.testing.assert_close(one[k], two[k], rtol=1e-6, atol=1e-7, msg=k)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_prints_one_line_and_resumes_exactly(tmp_path, signum):
    run, lines = tmp_path / "run", []
    proc = start(lambda script: [str(script), str(run), "16"], tmp_path)
    read_until(proc, r"^step 1/40: loss", lines)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    lines += out.splitlines(keepends=True)
    text = "".join(lines)
    assert proc.returncode == 128 + signum, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    (line,) = [line for line in lines if "resume with" in line]
    name = signal.Signals(signum).name
    stopped = int(re.match(rf"^{name}: stopped after step (\d+) and saved (\S+); resume with: ", line).group(1))
    assert 1 <= stopped < STEPS and f"rank 0 stopped after step {stopped}" in text
    assert newest_checkpoint(run).name == f"step_{stopped:06d}"
    assert f"run_dir={str(run)!r}, resume='auto'" in line  # from Python: what to pass to Trainer
    if signum == signal.SIGINT:  # resuming ends with the weights of a run that was never interrupted
        make_trainer(run, max_steps=STEPS, checkpoint_every=1000, sample_every=0, resume="auto").fit()
        make_trainer(tmp_path / "straight", max_steps=STEPS, checkpoint_every=1000, sample_every=0).fit()
        assert_same_weights(run, tmp_path / "straight")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_group_spares_the_loader_workers(tmp_path, signum):
    """Ctrl-C in a terminal, ``timeout``, ``kill -- -PGID`` and Slurm signal every process of the job, the DataLoader
    workers too; a worker that died of it used to fail the run ("DataLoader worker ... is killed by signal:
    Terminated") before it could save. The workers leave the signal to the main process, which saves as usual."""
    run, lines = tmp_path / "run", []
    proc = start(lambda script: [str(script), str(run), "16", "1"], tmp_path, own_group=True)
    read_until(proc, r"^step 1/40: loss", lines)
    os.killpg(proc.pid, signum)
    out, _ = proc.communicate(timeout=120)
    text = "".join(lines) + out
    assert proc.returncode == 128 + signum, text
    assert "Traceback" not in text and "killed by signal" not in text, text
    stopped = int(
        re.search(rf"^{signal.Signals(signum).name}: stopped after step (\d+) and saved", text, re.M).group(1)
    )
    assert newest_checkpoint(run).name == f"step_{stopped:06d}"


def test_the_previous_signal_handlers_come_back(tmp_path):
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    interrupt = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a job started in the background
    try:
        make_trainer(tmp_path, max_steps=2, sample_every=0).fit()
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is interrupt
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_during_the_last_step_ends_the_run_normally(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=3, sample_every=0)
    objective = trainer.objective

    class SignalsAtStep3:
        def __init__(self):
            self.calls = 0

        def __getattr__(self, name):
            return getattr(objective, name)

        def __call__(self, *args, **kwargs):
            self.calls += 1
            if self.calls == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return objective(*args, **kwargs)

    trainer.objective = SignalsAtStep3()
    trainer.fit()  # no TrainingInterrupted: the run is complete
    assert newest_checkpoint(tmp_path).name == "step_000003"


def test_training_interrupted_is_a_clean_exit_with_the_signal_code():
    error = TrainingInterrupted(signal.SIGINT, 4, Path("run/checkpoints/step_000004"), "mmdiff train ...", "line")
    assert isinstance(error, SystemExit) and error.code == 130 and str(error) == "line" and error.step == 4
    assert TrainingInterrupted(signal.SIGTERM, 1, Path("x"), "", "").code == 143
    with SignalStop() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert stop.should_stop() == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C quits at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)


@pytest.mark.slow
def test_two_processes_stop_after_the_same_step_when_one_gets_the_signal(tmp_path):
    run, lines = tmp_path / "run", []
    proc = start(
        lambda script: [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29531",
            str(script),
            str(run),
            "8",
        ],
        tmp_path,
    )
    pids = {}
    while len(pids) < 2:
        m = read_until(proc, r"rank (\d) pid (\d+)", lines)
        pids[int(m.group(1))] = int(m.group(2))
    read_until(proc, r"^step 1/40: loss", lines)
    os.kill(pids[1], signal.SIGINT)  # only the second process gets it
    out, _ = proc.communicate(timeout=180)
    text = "".join(lines) + out
    assert proc.returncode != 0, text
    steps = {int(s) for s in re.findall(r"rank \d stopped after step (\d+)", text)}
    assert len(re.findall(r"rank \d stopped after step", text)) == 2 and len(steps) == 1, text
    (stopped,) = steps
    assert stopped < STEPS and newest_checkpoint(run).name == f"step_{stopped:06d}", text
    assert len([line for line in text.splitlines() if "resume with" in line]) == 1, text
