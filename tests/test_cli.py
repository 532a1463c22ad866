"""The command line end to end, in subprocesses as a user runs it: train, resume, sample, config errors, user
recipes, a non-editable wheel install, and two-process (gloo) training."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "net.width=32",
    "net.depth=1",
    "data.size=512",
    "trainer.batch_size=16",
    "trainer.checkpoint_every=3",
    "trainer.sample_every=3",
    "trainer.lr_warmup_steps=2",
    "generate.num_samples=8",
    "generate.steps=4",
    "trainer.progress=false",
    "trainer.device=cpu",
]


def run(args, cwd, python=sys.executable, env=None, check=True):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(
        [python, "-m", "mmdiff", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mmdiff {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_train_resume_and_sample_from_the_cli(tmp_path):
    run_dir = tmp_path / "run"
    run(["train", "recipe=points_ring", f"run_dir={run_dir}", "trainer.max_steps=3", *TINY], tmp_path)
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "train.log").is_file()
    assert (run_dir / "checkpoints" / "step_000003").is_dir()
    out = run(
        ["train", "recipe=points_ring", f"run_dir={run_dir}", "trainer.max_steps=6", "trainer.resume=auto", *TINY],
        tmp_path,
    )
    assert "resumed from" in (run_dir / "train.log").read_text(), out.stderr
    assert (run_dir / "checkpoints" / "step_000006").is_dir() and (run_dir / "samples" / "step_000006").is_dir()
    sampled = run(
        [
            "sample",
            f"run={run_dir}",
            "n=5",
            f"out={tmp_path / 'gen'}",
            "steps=6",
            "sampler=euler",
            "seed=3",
            "label=2",
            "progress=false",
        ],
        tmp_path,
    )
    assert (tmp_path / "gen" / "sample.npy").is_file() and "sample.npy" in sampled.stdout
    scored = run(["eval", f"run={run_dir}", "n=128", f"out={tmp_path / 'report.json'}", "steps=5"], tmp_path)
    assert "sliced_w1" in scored.stdout and "real, held out" in scored.stdout
    assert (tmp_path / "report.json").is_file()


def test_bare_train_lists_recipes_and_cfg_job_prints_the_config(tmp_path):
    bare = run(["train"], tmp_path)
    assert "points_ring" in bare.stdout and "recipe=NAME" in bare.stdout
    cfg = run(["train", "recipe=points_ring", "trainer.max_steps=7", "--cfg", "job"], tmp_path)
    assert "max_steps: 7" in cfg.stdout and "run_dir: runs/20" in cfg.stdout and "${" not in cfg.stdout  # resolved
    assert "num_classes: auto" in cfg.stdout  # filled in from the data when training starts


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("recipe=nope", "Could not find 'recipe/nope'"),
        ("adapter=nope", "Available options in 'adapter'"),
        ("trainer.bogus=1", "Key 'bogus' is not in struct"),
        ("trainer.mixed_precision=fp8", "trainer.mixed_precision: expected no, bf16 or fp16, got 'fp8'"),
        ("generate.sampler=dpm", "unknown sampler 'dpm'; expected one of ddpm"),
        ("parameterization=eps", "unknown parameterization 'eps'; expected one of epsilon, x0, v, flow"),
    ],
)
def test_config_errors_name_the_key_and_the_choices(tmp_path, override, message):
    if override.startswith("recipe="):
        args = ["train", override]
    else:
        args = ["train", "recipe=points_ring", f"run_dir={tmp_path}/r", "trainer.max_steps=1", *TINY, override]
    proc = run(args, tmp_path, check=False, env={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_a_user_recipe_folder(tmp_path):
    mine = tmp_path / "my_recipes"
    mine.mkdir()
    (mine / "tiny_ring.yaml").write_text(
        "# @package _global_\n# My tiny ring.\ndefaults:\n  - override /schedule: edm\n"
        "num_classes: 0\nparameterization: x0\ntrainer:\n  max_steps: 2\n"
    )
    listing = run(["train", "--recipes", str(mine)], tmp_path)
    assert "tiny_ring" in listing.stdout and "My tiny ring." in listing.stdout
    run(["train", "--recipes", str(mine), "recipe=tiny_ring", f"run_dir={tmp_path / 'r'}", *TINY], tmp_path)
    assert (tmp_path / "r" / "checkpoints" / "step_000002").is_dir()
    run(
        ["train", "recipe=tiny_ring", f"run_dir={tmp_path / 'r2'}", *TINY],
        tmp_path,
        env={"MMDIFF_RECIPE_PATH": str(mine)},
    )


#: What building the wheel reads; copied so that the build writes its build/ and *.egg-info into the test's folder.
WHEEL_SOURCES = ["pyproject.toml", "setup.py", "README.md", "mmdiff", "conf", "recipes"]


def _isolated_venv_reusing_these_packages(venv: Path) -> str:
    """A venv that sees none of the running interpreter's packages on its own, plus a ``.pth`` file that appends the
    running interpreter's site-packages folders (a venv's, a conda env's or a bare interpreter's, and the user site)
    after the venv's own. Plain folder lines run no code, so the running interpreter's editable mmdiff (a ``.pth``
    import hook) stays invisible and the venv's installed wheel is the only mmdiff. Returns the venv's python."""
    import site
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = str(venv / "bin" / "python")
    venv_site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    folders = [*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    lines = list(dict.fromkeys(f for f in folders if Path(f).is_dir()))
    (Path(venv_site) / "_running_interpreter_packages.pth").write_text("\n".join(lines) + "\n")
    return python


@pytest.mark.slow
def test_wheel_install_in_a_fresh_venv_trains_from_another_directory(tmp_path):
    """`pip install .` (not editable) ships conf/ and recipes/ and trains from another directory. Works whether
    pytest runs in a venv, a conda env or a bare interpreter, and writes nothing outside ``tmp_path``."""
    import importlib.util

    source, wheels, venv = tmp_path / "source", tmp_path / "wheels", tmp_path / "venv"
    outputs_before = {name: (ROOT / name).exists() for name in ("build", "dist")}
    source.mkdir()
    for name in WHEEL_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, source / name)
    # the installed setuptools builds offline; without it pip fetches the build requirements
    no_isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *no_isolation, "-q", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    python = _isolated_venv_reusing_these_packages(venv)
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", *map(str, wheels.glob("*.whl"))],
        check=True,
        capture_output=True,
    )
    where = subprocess.run(
        [python, "-c", "import mmdiff, hydra; print(mmdiff.__file__)"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert str(venv) in where, where
    assert {name: (ROOT / name).exists() for name in outputs_before} == outputs_before  # built in tmp_path only
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run(["train", "recipe=points_ring", "run_dir=run", "trainer.max_steps=2", *TINY], elsewhere, python=python)
    assert (elsewhere / "run" / "checkpoints" / "step_000002" / "ema.safetensors").is_file()


@pytest.mark.slow
def test_two_cpu_processes_match_one_process_with_the_same_global_batch(tmp_path):
    common = ["recipe=points_ring", "trainer.max_steps=4", "trainer.grad_clip=null", *TINY]
    run(["train", *common, f"run_dir={tmp_path / 'one'}", "trainer.batch_size=16"], tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            "-m",
            "mmdiff",
            "train",
            *common,
            f"run_dir={tmp_path / 'two'}",
            "trainer.batch_size=8",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    one = load_file(tmp_path / "one" / "checkpoints" / "step_000004" / "model.safetensors")
    two = load_file(tmp_path / "two" / "checkpoints" / "step_000004" / "model.safetensors")
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(one[k], two[k], rtol=1e-4, atol=1e-5, msg=k)
