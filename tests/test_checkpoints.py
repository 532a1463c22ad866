"""Checkpoints run no code and survive damage: the resumable state round-trips through safetensors + JSON, a pickle
planted in any file of a checkpoint folder is refused (naming the file) by resume and by ``mmdiff.load``, and a
truncated file is named while resuming and loading fall back to the newest complete checkpoint."""

import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import make_trainer

import mmdiff
from mmdiff.checkpoints import (
    CheckpointError,
    UnsafeCheckpointError,
    checkpoint_dirs,
    load_state,
    load_weights,
    newest_checkpoint,
    rng_state,
    save_checkpoint,
)


class WritesAFile:
    """A pickle payload: unpickling it writes ``marker``, as an attacker's code would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "the payload ran"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run with checkpoints at steps 3 and 6."""
    run = tmp_path_factory.mktemp("trained") / "run"
    make_trainer(run, max_steps=6, checkpoint_every=3, sample_every=0).fit()
    return run


def copy_run(trained, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run


def test_the_resumable_state_round_trips_without_pickle(tmp_path):
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.8, 0.95))
    net(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    np.random.seed(5)  # noqa: NPY002
    random.seed(5)
    state = {"optimizer": optimizer.state_dict(), "rng": rng_state(), "note": {"nan": float("nan"), 3: (1, None)}}
    folder = save_checkpoint(tmp_path, 7, model=net.state_dict(), ema=net.state_dict(), state=state, config_yaml="a: 1")
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.yaml",
        "ema.safetensors",
        "model.safetensors",
        "state.json",
        "state.safetensors",
    ]
    back = load_state(folder)
    assert back["step"] == 7
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.95)  # tuples stay tuples
    assert sorted(back["optimizer"]["state"]) == [0, 1]  # integer keys stay integers: the optimizer finds them
    for key in ("exp_avg", "exp_avg_sq", "step"):
        torch.testing.assert_close(back["optimizer"]["state"][0][key], state["optimizer"]["state"][0][key])
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    assert back["rng"]["python"] == state["rng"]["python"]
    np.testing.assert_array_equal(back["rng"]["numpy"][1], state["rng"]["numpy"][1])
    assert back["note"][3] == (1, None) and back["note"]["nan"] != back["note"]["nan"]
    restored = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters())
    restored.load_state_dict(back["optimizer"])
    assert restored.param_groups[0]["betas"] == (0.8, 0.95) and len(restored.state) == 2
    with pytest.raises(TypeError, match=r"state\.odd is a object"):
        save_checkpoint(tmp_path, 8, model={}, ema={}, state={"odd": object()}, config_yaml="")


@pytest.mark.parametrize(
    "name", ["state.pt", "state.json", "state.safetensors", "model.safetensors", "ema.safetensors", "notes.bin"]
)
def test_a_planted_pickle_is_refused_on_resume_and_on_load(trained, tmp_path, name):
    marker = tmp_path / "pwned.txt"
    payload = pickle.dumps(WritesAFile(marker))
    pickle.loads(payload)  # the payload works: unpickling it writes the marker
    assert marker.read_text() == "the payload ran"
    marker.unlink()

    run = copy_run(trained, tmp_path)
    folder = newest_checkpoint(run)
    if name == "state.pt":  # what mmdiff used to unpickle on resume, as torch.save writes it
        torch.save({"payload": WritesAFile(marker)}, folder / name)
    else:
        (folder / name).write_bytes(payload)
    for attempt in (
        lambda: make_trainer(run, max_steps=8, resume="auto").fit(),
        lambda: make_trainer(tmp_path / "other", max_steps=8, resume=str(folder)).fit(),
        lambda: mmdiff.load(run, device="cpu"),
        lambda: mmdiff.load(folder, device="cpu"),
        lambda: load_weights(folder),
        lambda: load_state(folder),
    ):
        with pytest.raises(UnsafeCheckpointError) as error:
            attempt()
        message = str(error.value)
        assert f"{folder / name}: a pickle" in message and "\n" not in message
        assert not marker.exists()
    assert checkpoint_dirs(run)[-1] == folder  # nothing was trained or written


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "name", ["model.safetensors", "ema.safetensors", "state.safetensors", "state.json", "config.yaml"]
)
def test_a_truncated_file_is_named_and_loading_falls_back(trained, tmp_path, caplog, name):
    run = copy_run(trained, tmp_path)
    damaged = run / "checkpoints" / "step_000006"
    if name == "config.yaml":
        (damaged / name).unlink()
    else:
        truncate(damaged / name)
    with caplog.at_level("INFO", logger="mmdiff"):
        pipe = mmdiff.load(run, device="cpu")
    assert pipe.generate(2, steps=2, progress=False)
    assert f"skipping checkpoint {damaged}: {damaged / name}" in caplog.text
    assert f"using checkpoint {run / 'checkpoints' / 'step_000003'}" in caplog.text
    if name == "config.yaml":
        with pytest.raises(CheckpointError, match=rf"^{re.escape(str(damaged / name))} is missing"):
            mmdiff.load(damaged, device="cpu")
    else:  # a folder named explicitly is not replaced by another: the error names the file
        with pytest.raises(CheckpointError, match=rf"^{re.escape(str(damaged / name))}: incomplete or corrupt"):
            mmdiff.load(damaged, device="cpu")
        with pytest.raises(CheckpointError, match=rf"^{re.escape(str(damaged / name))}: incomplete or corrupt"):
            make_trainer(tmp_path / "other", max_steps=8, resume=str(damaged)).fit()


def test_resume_auto_falls_back_to_the_newest_complete_checkpoint(trained, tmp_path, caplog):
    run = copy_run(trained, tmp_path)
    truncate(run / "checkpoints" / "step_000006" / "model.safetensors")
    with caplog.at_level("INFO", logger="mmdiff"):
        make_trainer(run, max_steps=7, resume="auto", sample_every=0).fit()
    assert "skipping checkpoint" in caplog.text and "step_000006/model.safetensors" in caplog.text
    assert f"resumed from {run / 'checkpoints' / 'step_000003'} at step 3" in caplog.text
    assert newest_checkpoint(run).name == "step_000007"


def test_a_run_whose_checkpoints_are_all_damaged_is_an_error(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    for folder in checkpoint_dirs(run):
        truncate(folder / "state.json")
    with pytest.raises(CheckpointError, match="none of its 2 checkpoint"):
        mmdiff.load(run, device="cpu")
    with pytest.raises(CheckpointError, match="none of its 2 checkpoint"):
        make_trainer(run, max_steps=8, resume="auto").fit()
