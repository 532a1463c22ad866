"""Stopping on Ctrl-C or SIGTERM without losing work: finish the step, save a checkpoint, say how to resume.

:class:`SignalStop` only records a signal; the training loop asks it once per step whether to stop, saves, and
raises :class:`TrainingInterrupted`. Under several processes the signal may reach them at different steps (or reach
only some), so they agree through a collective: a one-number all-reduce per step over a CPU (gloo) group, started
asynchronously and read one step later, so that it never waits for the accelerator and hardly for the other
processes. One process needs no collective.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import torch

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(SystemExit):
    """Training stopped on SIGINT or SIGTERM after writing a checkpoint at ``step``.

    A :class:`SystemExit` whose code is ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM), so that an uncaught one
    ends a script or the ``mmdiff`` command with that status and no traceback; ``str()`` is the one-line message
    (also logged) with the command that resumes. ``checkpoint`` is the folder written, ``resume_command`` the command.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path, resume_command: str, message: str):
        super().__init__(128 + signum)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.resume_command, self.message = resume_command, message

    def __str__(self) -> str:
        return self.message


class SignalStop:
    """A context manager that turns SIGINT/SIGTERM into a request to stop after the current step.

    The first signal only sets a flag; a second Ctrl-C stops at once (``KeyboardInterrupt``, no checkpoint). The
    previous handlers come back on exit. Outside the main thread (where Python cannot install handlers) it does
    nothing and :meth:`should_stop` stays false.
    """

    def __init__(self):
        self.num_processes = 1
        self.signum = 0  # the signal received here (0: none)
        self._previous: dict[int, Any] = {}
        self._pending: tuple[Any, torch.Tensor] | None = None  # (async all-reduce, its tensor) of the last step
        self._group: Any = None

    def __enter__(self) -> SignalStop:
        self.signum, self.num_processes = 0, 1
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def arm(self, num_processes: int) -> None:
        """Set the number of processes that must agree; with several, every one of them must call this."""
        self.num_processes = num_processes
        if num_processes > 1:
            import torch.distributed as dist

            self._group = dist.new_group(backend="gloo")  # CPU flags: no accelerator sync to agree on stopping

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._pending is not None:  # every process started this all-reduce: finish it on every process
            self._pending[0].wait()
            self._pending = None
        if self._group is not None:
            import torch.distributed as dist

            dist.destroy_process_group(self._group)
            self._group = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def should_stop(self) -> int:
        """The signal to stop on (0: go on). Call once per step on every process: with several processes it answers
        what all of them agreed on at the previous call, so they all stop after the same step."""
        if self.num_processes == 1:
            return self.signum
        import torch.distributed as dist

        agreed = 0
        if self._pending is not None:
            work, flag = self._pending
            work.wait()
            agreed = int(flag.item())  # a CPU tensor: no accelerator sync
        flag = torch.tensor([self.signum])
        self._pending = (dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group, async_op=True), flag)
        return agreed
