"""One run per run directory (refuse, resume or move aside), fine-tuning starts (``init_from``), the trainer's
setting errors, and the loss read without a host sync per step."""

import sys

import pytest
import torch
from safetensors.torch import load_file
from test_training import make_trainer

from mmdiff.checkpoints import checkpoint_dirs, newest_checkpoint
from mmdiff.train.runs import RunDirInUseError, resume_command


def names(run):
    return [p.name for p in checkpoint_dirs(run)]


def events(run):
    return sorted((run / "tensorboard").glob("events.out.tfevents.*"))


def test_a_new_run_into_a_used_run_dir_is_refused_before_any_work(tmp_path):
    run = tmp_path / "run"
    make_trainer(run, max_steps=3).fit()
    before = (names(run), events(run), sorted((run / "samples").iterdir()))
    with pytest.raises(RunDirInUseError) as error:
        make_trainer(run, max_steps=2).fit()
    message = str(error.value)
    assert "\n" not in message and "step_000003" in message
    assert "trainer.resume=auto" in message and "run_dir=" in message and "trainer.overwrite=true" in message
    assert (names(run), events(run), sorted((run / "samples").iterdir())) == before  # nothing written
    make_trainer(tmp_path / "new", max_steps=2).fit()  # a new run_dir is the second way
    assert names(tmp_path / "new") == ["step_000002"]
    # the first way out: continue the run
    make_trainer(run, max_steps=4, resume="auto").fit()
    assert names(run) == ["step_000003", "step_000004"]


def test_overwrite_moves_the_old_run_aside_and_starts_over(tmp_path, caplog):
    run = tmp_path / "run"
    make_trainer(run, max_steps=3).fit()
    (run / ".hydra").mkdir()  # what Hydra made for the new run stays in place
    with caplog.at_level("INFO", logger="mmdiff"):
        make_trainer(run, max_steps=2, overwrite=True).fit()
    (aside,) = run.glob("replaced_*")
    assert f"moved the old run's checkpoints/, samples/, tensorboard/ to {aside}" in caplog.text
    assert names(aside) == ["step_000003"] and (aside / "samples" / "step_000003").is_dir() and events(aside)
    assert names(run) == ["step_000002"] and len(events(run)) == 1 and (run / ".hydra").is_dir()
    assert [p.name for p in (run / "samples").iterdir()] == ["step_000002"]


def test_conflicting_start_settings_and_bad_values_are_named(tmp_path):
    with pytest.raises(ValueError, match="^trainer.overwrite=true starts the run over and cannot go with"):
        make_trainer(tmp_path, overwrite=True, resume="auto")
    with pytest.raises(ValueError, match="^trainer.init_from starts a new run .* cannot go with trainer.resume"):
        make_trainer(tmp_path, init_from=str(tmp_path), resume="auto")
    for key, value in (("batch_size", -4), ("max_steps", 0), ("log_every", 0), ("checkpoint_every", -1)):
        with pytest.raises(ValueError, match=rf"^trainer.{key} must be >= [01], got {value}$"):
            make_trainer(tmp_path, **{key: value})
    for device in ("gpu", "cuda:x", "cuda1"):
        with pytest.raises(ValueError, match=rf"^trainer.device: expected auto, cpu, cuda or cuda:N, got '{device}'"):
            make_trainer(tmp_path, device=device)
    if not torch.cuda.is_available():
        for device in ("cuda", "cuda:1"):
            with pytest.raises(ValueError, match=rf"^trainer.device={device}: no CUDA GPU is visible here"):
                make_trainer(tmp_path, device=device)
    else:
        count = torch.cuda.device_count()
        with pytest.raises(ValueError, match=rf"^trainer.device=cuda:{count}: {count} GPU\(s\) visible"):
            make_trainer(tmp_path, device=f"cuda:{count}")


def test_fine_tuning_starts_from_the_matching_weights(tmp_path, caplog, monkeypatch):
    from mmdiff.train import trainer as trainer_module

    source = tmp_path / "source"
    make_trainer(source, max_steps=3, sample_every=0).fit()  # 8 classes
    trained = load_file(newest_checkpoint(source) / "ema.safetensors")
    started = {}
    load = trainer_module.load_matching_weights

    def load_and_keep(net, from_):  # the weights the new run starts from, before its first step changes them
        out = load(net, from_)
        started.update({k: v.clone() for k, v in net.state_dict().items()})
        return out

    monkeypatch.setattr(trainer_module, "load_matching_weights", load_and_keep)
    trainer = make_trainer(tmp_path / "tuned", num_classes=4, init_from=str(source), max_steps=2, sample_every=0)
    fresh_embedding = trainer.net.state_dict()["cond.table.weight"].clone()
    with caplog.at_level("INFO", logger="mmdiff"):
        trainer.fit()
    assert f"init_from {source / 'checkpoints' / 'step_000003'} (its EMA weights)" in caplog.text
    assert "cond.table.weight  shape mismatch: (9, 32) -> (5, 32)" in caplog.text
    for name, value in started.items():
        if name == "cond.table.weight":
            assert torch.equal(value, fresh_embedding)  # kept its fresh initialisation
        else:
            assert torch.equal(value, trained[name]), name
    assert names(tmp_path / "tuned") == ["step_000002"]  # a new run from step 0: new optimizer and schedule
    ema = load_file(newest_checkpoint(tmp_path / "tuned") / "ema.safetensors")
    assert all((ema[k] - trained[k]).abs().max() < 0.01 for k in trained if k != "cond.table.weight")


def test_the_loss_is_read_only_at_log_points_and_before_saving(tmp_path, monkeypatch):
    from mmdiff.train import trainer as trainer_module

    reads, host_syncs = [], []
    read = trainer_module._LossMonitor.read
    monkeypatch.setattr(
        trainer_module._LossMonitor, "read", lambda self, step, run: reads.append(step) or read(self, step, run)
    )
    for name in ("item", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, _name=name):
            if sys._getframe(1).f_code.co_filename == trainer_module.__file__:
                host_syncs.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, spy)
    make_trainer(tmp_path, max_steps=10, log_every=4, checkpoint_every=6, sample_every=0).fit()
    assert reads == [4, 6, 8, 10]  # log points, checkpoints and the end; no other step
    assert host_syncs == ["__bool__", "__bool__"]  # the finite-weights check before each of the 2 checkpoints


def test_the_resume_command_repeats_the_overrides(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(
        "- recipe=points_ring\n- trainer.max_steps=30\n- trainer.overwrite=true\n- data.root=/my data\n"
    )
    assert resume_command(tmp_path) == (
        f"mmdiff train recipe=points_ring trainer.max_steps=30 'data.root=/my data' run_dir={tmp_path} "
        "trainer.resume=auto"
    )
