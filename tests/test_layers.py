"""The layers of shared/DESIGN.md hold for the code: no import runs upward (checked by import-linter's layers
contract in pyproject.toml, which sees imports inside functions too)."""

import os
import shutil
import subprocess
import sys

from _helpers import ROOT

LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(cwd, pythonpath=None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_imports_point_down_only():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0 and "1 kept, 0 broken" in proc.stdout, proc.stdout + proc.stderr


def test_an_upward_import_would_be_caught(tmp_path):
    """The contract is not vacuous: a copy of the package in which the core imports the pipeline breaks it."""
    shutil.copytree(ROOT / "mmdiff", tmp_path / "mmdiff", ignore=shutil.ignore_patterns("__pycache__", "_configs"))
    (tmp_path / "mmdiff" / "core" / "upward.py").write_text("from ..pipeline import load\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    proc = lint_imports(tmp_path, pythonpath=tmp_path)
    assert proc.returncode != 0 and "mmdiff.core.upward -> mmdiff.pipeline" in proc.stdout, proc.stdout + proc.stderr


def test_training_does_not_import_librosa():
    """librosa (and numba under it) serves only the measures; a trainer and every modality import without it, so that
    ``mmdiff train`` starts without compiling numba and runs where numba is missing (a lean GPU image)."""
    code = (
        "import sys; import mmdiff.train.trainer, mmdiff.cli, mmdiff.pipeline; "
        "import mmdiff.modalities.audio, mmdiff.modalities.video, mmdiff.modalities.av; "
        "import mmdiff.modalities.audio.metrics, mmdiff.modalities.audio.attributes, mmdiff.modalities.av.sync; "
        "print(sorted(m for m in ('librosa', 'numba') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
