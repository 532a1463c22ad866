"""One run per run directory: refuse to mix a new run into an old one, move an old run aside on request, and the
command that resumes a run.

Hydra creates ``run_dir/.hydra`` and the log file before training starts, so starting over moves the old run's
``checkpoints/``, ``samples/``, ``tensorboard/`` (and ``generated/``, what ``mmdiff sample`` wrote from it, and a
latent run's ``autoencoder/``) into
``run_dir/replaced_<time>/`` rather than the folder itself.
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path

import yaml

from ..checkpoints import checkpoint_dirs

log = logging.getLogger("mmdiff.train")

RUN_OUTPUTS = ("checkpoints", "samples", "tensorboard", "generated", "autoencoder")
# generated/: what `mmdiff sample` wrote without out=; autoencoder/: a latent run's codec and latent statistics
# trainer keys that choose how a run starts; the resume command replaces them by trainer.resume=auto
_START_KEYS = ("trainer.resume", "trainer.overwrite", "trainer.init_from")


class RunDirInUseError(ValueError):
    """Training would start a new run in a run directory that holds another run's checkpoints."""


def refuse_mixing(run_dir: Path, *, overwrite: bool) -> None:
    """Raise :class:`RunDirInUseError` when a new run (no resume) would write into ``run_dir`` holding checkpoints,
    unless ``overwrite`` (which :func:`move_aside` then honours)."""
    found = checkpoint_dirs(run_dir)
    if found and not overwrite:
        raise RunDirInUseError(
            f"run_dir {run_dir} already holds checkpoints of another run (newest {found[-1].name}): add "
            "trainer.resume=auto to continue it, choose a new run_dir=..., or add trainer.overwrite=true to move the "
            "old run aside and start over"
        )


def move_aside(run_dir: Path) -> Path | None:
    """Move the old run's outputs into ``run_dir/replaced_<time>/``; return that folder (``None``: nothing to move)."""
    present = [run_dir / name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if not present:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = run_dir / f"replaced_{stamp}", 1
    while target.exists():
        n += 1
        target = run_dir / f"replaced_{stamp}_{n}"
    target.mkdir()
    for path in present:
        path.rename(target / path.name)
    log.warning("trainer.overwrite: moved the old run's %s to %s", ", ".join(f"{p.name}/" for p in present), target)
    return target


def resume_command(run_dir: Path) -> str:
    """The command that resumes the run in ``run_dir``: its Hydra overrides (``.hydra/overrides.yaml``) with
    ``trainer.resume=auto``; for a run started from Python, the ``Trainer`` arguments to pass instead."""
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else None
    if not isinstance(overrides, list):
        return f"Trainer(..., run_dir={str(run_dir)!r}, resume='auto')"
    kept = [o for o in map(str, overrides) if o.split("=", 1)[0].lstrip("+~") not in _START_KEYS]
    if not any(o.startswith("run_dir=") for o in kept):
        kept.append(f"run_dir={run_dir}")
    return shlex.join(["mmdiff", "train", *kept, "trainer.resume=auto"])
