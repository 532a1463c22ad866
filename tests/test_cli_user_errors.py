"""What a new user meets on the command line: one-line errors (exit 2) instead of tracebacks, sampler options and
conditions from `mmdiff sample`, where samples go, the class count taken from the data, one prediction type."""

import os
import stat
import subprocess

import numpy as np
import pytest
import yaml
from test_cli import TINY, run
from test_docs_shell import AUDIO, COMMON

from mmdiff.modalities.audio.io import write_audio

AUDIO_TINY = [*COMMON, *AUDIO]  # the README's main job (audio_music_cpu) in miniature: seconds on a CPU


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
    """A tiny points run trained from the CLI with x0-prediction (the recipe says v)."""
    root = tmp_path_factory.mktemp("cli_run")
    run_dir = root / "run"
    run(
        ["train", "recipe=points_ring", f"run_dir={run_dir}", "trainer.max_steps=3", "parameterization=x0", *TINY],
        root,
    )
    return run_dir


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The process failed with exit code 2 and one error line (no traceback) that holds every needle; other stderr
    lines may only be log lines (which checkpoint was loaded)."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mmdiff ")]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) <= 2, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_the_prediction_type_is_one_setting_for_training_and_loading(points_run):
    import mmdiff

    saved = yaml.safe_load((points_run / ".hydra" / "config.yaml").read_text())
    assert saved["parameterization"] == "x0" and "parameterization" not in saved["objective"]
    assert mmdiff.load(points_run, device="cpu").model.parameterization == "x0"
    proc = run(
        ["train", "recipe=points_ring", "objective.parameterization=x0", "--cfg", "job"], points_run, check=False
    )
    assert proc.returncode != 0 and "Could not override 'objective.parameterization'" in proc.stdout + proc.stderr


def test_sample_takes_sampler_options_and_conditions_and_says_where_it_wrote(points_run, tmp_path):
    proc = run(
        ["sample", f"run={points_run}", "n=4", "sampler=dpmpp_2m_sde", "eta=0.5", "steps=3", "label=2"], tmp_path
    )
    assert "wrote 4 samples to" in proc.stderr
    out = proc.stderr.split("wrote 4 samples to ")[1].split()[0]
    assert out.startswith(str(points_run / "generated")) and (tmp_path / "samples").exists() is False
    assert np.load(f"{out}/sample.npy").shape == (4, 2) and os.path.isfile(f"{out}/sample_preview.png")
    assert any("Loading" in line or "checkpoint" in line for line in proc.stderr.splitlines())  # which checkpoint
    again = run(["sample", f"run={points_run}", "n=2", "steps=2"], tmp_path)
    assert again.stderr.split("wrote 2 samples to ")[1].split()[0] != out  # a fresh folder per call
    target = tmp_path / "mine"
    run(["sample", f"run={points_run}", "n=2", "steps=2", f"out={target}"], tmp_path)
    reused = run(["sample", f"run={points_run}", "n=2", "steps=2", f"out={target}"], tmp_path, check=False)
    one_line_error(reused, f"out={target} already holds samples", "overwrite=true")
    run(["sample", f"run={points_run}", "n=3", "steps=2", f"out={target}", "overwrite=true"], tmp_path)
    assert np.load(target / "sample.npy").shape == (3, 2)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["n=0"], ["n (num_samples): expected a whole number >= 1, got 0"]),
        (["steps=0"], ["steps: expected a whole number >= 1"]),
        (["label=9"], ["label: classes are 0..7", "got 9"]),
        (["guidance_scale=-1"], ["guidance_scale: expected a number >= 0"]),
        (["length=5"], ["length: points have no length"]),
        (["etta=1"], ["unknown option 'etta'; valid options:", "eta", "label"]),
        (["eta=0.5"], ["eta: sampler 'unipc' does not take it"]),
        (["init=missing.wav"], ["init"]),
    ],
)
def test_sample_errors_are_one_line(points_run, tmp_path, args, needles):
    proc = run(["sample", f"run={points_run}", "progress=false", *args], tmp_path, check=False)
    one_line_error(proc, *needles)


def test_other_user_errors_are_one_line(tmp_path):
    one_line_error(run(["sample", f"run={tmp_path}"], tmp_path, check=False), str(tmp_path))
    one_line_error(run(["sample", "n=2"], tmp_path, check=False), "run=PATH is required")
    one_line_error(run(["eval", f"run={tmp_path / 'none'}"], tmp_path, check=False), "does not exist")
    bad = run(
        ["train", "recipe=points_ring", f"run_dir={tmp_path / 'r'}", *TINY, "trainer.batch_size=-4"],
        tmp_path,
        check=False,
    )
    one_line_error(bad, "trainer.batch_size must be >= 1, got -4")
    debug = run(["sample", "n=2", "--debug"], tmp_path, check=False)
    assert "Traceback" in debug.stderr  # --debug shows where an error came from
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): a read-only folder cannot be made")
        proc = run(["train", "recipe=points_ring", f"run_dir={locked / 'run'}", *TINY], tmp_path, check=False)
        one_line_error(proc, "run_dir=", "is not writable")
    finally:
        locked.chmod(stat.S_IRWXU)


def test_an_unlabelled_folder_trains_with_the_readme_command_and_data_root(tmp_path):
    """The README's main job plus only data.root=...: the class count comes from the data (0 here)."""
    folder = tmp_path / "my_music"
    folder.mkdir()
    t = np.arange(8000) / 16000
    for i in range(3):
        write_audio(folder / f"clip{i}.wav", 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t)[None], 16000)
    run_dir = tmp_path / "runs" / "music"
    run(["train", "recipe=audio_music_cpu", f"run_dir={run_dir}", f"data.root={folder}", *AUDIO_TINY], tmp_path)
    config = yaml.safe_load((run_dir / "checkpoints" / "step_000002" / "config.yaml").read_text())
    assert config["num_classes"] == 0 and config["conditioner"]["num_classes"] == 0
    assert (run_dir / "samples" / "step_000002" / "sample_000.wav").is_file()
    # a sub-folder-labelled folder gets its count and names; a stated count that disagrees is one line
    for name in ("jazz", "rock"):
        (folder / name).mkdir()
        for i in range(2):
            write_audio(folder / name / f"{name}{i}.wav", 0.3 * np.sin(2 * np.pi * 330 * t)[None], 16000)
    labelled = tmp_path / "runs" / "labelled"
    args = ["train", "recipe=audio_music_cpu", f"data.root={folder}", "data.folder.labels=subfolder", *AUDIO_TINY]
    run([*args, f"run_dir={labelled}"], tmp_path)
    config = yaml.safe_load((labelled / "checkpoints" / "step_000002" / "config.yaml").read_text())
    assert config["num_classes"] == 2 and config["class_names"] == ["jazz", "rock"]
    wrong = run([*args, f"run_dir={tmp_path / 'runs' / 'wrong'}", "num_classes=4"], tmp_path, check=False)
    one_line_error(wrong, "num_classes=4 but the data", "has 2 classes")
