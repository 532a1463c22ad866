"""The training spine: Trainer, checkpoints, resume, non-finite losses, EMA and generation."""

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mmdiff
from mmdiff.checkpoints import checkpoint_dirs, newest_checkpoint
from mmdiff.conditioners import ClassLabels
from mmdiff.core import DiffusionLoss, DiffusionModel, vp_cosine
from mmdiff.modalities.points import MixturePoints, PointsAdapter, PointsMLP
from mmdiff.train import NonFiniteLossError, Trainer
from mmdiff.train.stream import StreamBatchSampler

CONFIG = (Path(__file__).parent / "data" / "points_config.yaml").read_text()
GENERATE = {"sampler": "dpmpp_2m", "steps": 4, "spacing": "trailing", "num_samples": 8, "seed": 0}


def make_trainer(run_dir, objective=None, num_classes=8, **settings):
    """A tiny points run (``num_classes`` ring modes, each a class) with the test defaults, overridable."""
    torch.manual_seed(0)
    schedule = vp_cosine()
    defaults = dict(
        max_steps=6,
        batch_size=16,
        checkpoint_every=3,
        sample_every=3,
        lr_warmup_steps=2,
        device="cpu",
        progress=False,
        seed=0,
    )
    return Trainer(
        adapter=PointsAdapter(dim=2),
        conditioner=ClassLabels(num_classes=num_classes),
        net=PointsMLP(dim=2, width=32, depth=1, num_classes=num_classes),
        dataset=settings.pop("dataset", None) or MixturePoints(size=256, components=num_classes),
        objective=objective or DiffusionLoss(DiffusionModel(schedule, "v"), weighting="min_snr"),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
        run_dir=run_dir,
        config_yaml=CONFIG,
        generate=GENERATE,
        **{**defaults, **settings},
    )


def test_stream_is_deterministic_and_splits_across_processes():
    one = StreamBatchSampler(100, 8, seed=3).micro_batch(5)
    halves = [StreamBatchSampler(100, 4, seed=3, rank=r, world_size=2).micro_batch(5) for r in (0, 1)]
    assert one == halves[0] + halves[1]
    resumed = StreamBatchSampler(100, 8, seed=3, start_micro_batch=5)
    assert next(iter(resumed)) == one
    epoch = [i for m in range(25) for i, _ in StreamBatchSampler(100, 4, seed=0).micro_batch(m)]
    assert sorted(epoch) == list(range(100))  # each epoch is a permutation


def test_training_writes_checkpoints_samples_and_tensorboard(tmp_path):
    make_trainer(tmp_path, keep_checkpoints=1).fit()
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_000006"]  # keep_checkpoints=1
    ckpt = newest_checkpoint(tmp_path)
    assert {p.name for p in ckpt.iterdir()} == {
        "model.safetensors",
        "ema.safetensors",
        "state.safetensors",
        "state.json",
        "config.yaml",
    }
    raw, ema = load_file(ckpt / "model.safetensors"), load_file(ckpt / "ema.safetensors")
    assert raw.keys() == ema.keys() and any(not torch.equal(raw[k], ema[k]) for k in raw)
    for step in ("step_000003", "step_000006"):
        files = {p.name for p in (tmp_path / "samples" / step).iterdir()}
        assert {"points.npy", "points.csv", "preview.png"} <= files
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_without_a_progress_bar_the_log_shows_the_setup_and_the_progress(tmp_path, caplog):
    with caplog.at_level("INFO", logger="mmdiff.train"):
        make_trainer(tmp_path, max_steps=4, log_every=2, progress=False).fit()
    text = caplog.text
    params = sum(p.numel() for p in PointsMLP(dim=2, width=32, depth=1, num_classes=8).parameters())
    setup = (
        f"training {params:,} parameters on cpu x 1 process(es), global batch 16 (16 x 1 x grad_accum 1), steps 0 -> 4"
    )
    assert setup in text
    rates = [
        float(r)
        for r in re.findall(r"step [24]/4: loss [0-9.]+ \(smoothed [0-9.]+\), lr [0-9.e+-]+, ([0-9.]+) samples/s", text)
    ]
    # the demo samples and the checkpoint written at step 3 do not count against the training rate of steps 3-4
    assert len(rates) == 2 and rates[1] > 0.2 * rates[0], text


class Interrupt(Exception):
    pass


class DiesAt:
    """An objective that kills the run on its ``n``-th call, as a crash or a pre-empted job would."""

    def __init__(self, inner, n):
        self.inner, self.n, self.calls = inner, n, 0
        self.model = inner.model

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise Interrupt
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_a_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, grad_accum):
    straight = make_trainer(tmp_path / "straight", grad_accum=grad_accum, max_steps=8, checkpoint_every=3).fit()
    loss = DiffusionLoss(DiffusionModel(vp_cosine(), "v"), weighting="min_snr")
    with pytest.raises(Interrupt):  # dies during step 5, after the checkpoint at step 3
        make_trainer(
            tmp_path / "killed",
            DiesAt(loss, 4 * grad_accum + 1),
            grad_accum=grad_accum,
            max_steps=8,
            checkpoint_every=3,
        ).fit()
    assert newest_checkpoint(tmp_path / "killed").name == "step_000003"
    resumed = make_trainer(
        tmp_path / "killed", grad_accum=grad_accum, max_steps=8, checkpoint_every=3, resume="auto"
    ).fit()
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    ema_a = load_file(newest_checkpoint(tmp_path / "straight") / "ema.safetensors")
    ema_b = load_file(newest_checkpoint(tmp_path / "killed") / "ema.safetensors")
    for k in ema_a:
        torch.testing.assert_close(ema_a[k], ema_b[k], rtol=1e-6, atol=1e-7)


def test_a_non_finite_loss_stops_the_run_and_is_never_saved(tmp_path):
    """The loss is read every log_every steps and before each checkpoint: a NaN at step 5 stops the run at the
    checkpoint of step 6, which is not written."""

    class NaNAt(DiesAt):
        def __call__(self, *args, **kwargs):
            self.calls += 1
            out = self.inner(*args, **kwargs)
            return out * float("nan") if self.calls == self.n else out

    trainer = make_trainer(tmp_path, NaNAt(DiffusionLoss(DiffusionModel(vp_cosine(), "v")), 5), max_steps=8)
    message = r"step 5: the loss is not finite \(read at step 6, covering steps 4-6\).*step_000003"
    with pytest.raises(NonFiniteLossError, match=message):
        trainer.fit()
    assert newest_checkpoint(tmp_path).name == "step_000003"
    for name in ("model.safetensors", "ema.safetensors"):
        assert all(torch.isfinite(w).all() for w in load_file(tmp_path / "checkpoints" / "step_000003" / name).values())


def test_non_finite_weights_are_never_saved(tmp_path):
    """A finite loss with an update that breaks the weights: the check before the checkpoint stops it."""
    trainer = make_trainer(tmp_path, max_steps=4, checkpoint_every=1)
    trainer.optimizer_factory = lambda params: torch.optim.SGD(params, lr=float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"step 1: the weights are not finite, so no checkpoint was written"):
        trainer.fit()
    assert checkpoint_dirs(tmp_path) == []


def test_a_crash_while_saving_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    make_trainer(tmp_path, max_steps=3).fit()
    import mmdiff.checkpoints as ckpt

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        make_trainer(tmp_path, max_steps=6, resume="auto").fit()
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_000003"]
    assert mmdiff.load(tmp_path, device="cpu").generate(2, steps=3, progress=False)


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="trainer.mixed_precision: expected no, bf16 or fp16, got 'fp8'"):
        make_trainer(tmp_path, mixed_precision="fp8")
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        make_trainer(tmp_path, resume=str(tmp_path / "nope")).fit()


def test_load_generate_and_save(tmp_path):
    make_trainer(tmp_path / "run", max_steps=3).fit()
    pipe = mmdiff.load(tmp_path / "run", device="cpu")
    points = pipe.generate(6, steps=5, sampler="heun", seed=0, label=[0, 1, 2, 3, 4, 5], progress=False)
    assert len(points) == 6 and points[0].shape == (2,)
    again = pipe.generate(6, steps=5, sampler="heun", seed=0, label=[0, 1, 2, 3, 4, 5], progress=False)
    assert all((a == b).all() for a, b in zip(points, again))
    paths = pipe.save(points, tmp_path / "out")
    assert [p.name for p in paths] == ["sample.npy", "sample.csv"] and (
        tmp_path / "out" / "sample_preview.png"
    ).is_file()
    # a checkpoint folder and a weights file load too; EMA by default, raw on request
    ckpt = newest_checkpoint(tmp_path / "run")
    raw = mmdiff.load(ckpt / "model.safetensors", device="cpu")
    ema = mmdiff.load(ckpt, device="cpu")
    assert any(not torch.equal(a, b) for a, b in zip(raw.net.state_dict().values(), ema.net.state_dict().values()))
    with pytest.raises(ValueError, match="label: classes are 0..7"):
        pipe.generate(2, label=9, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        mmdiff.load(tmp_path / "out")


def test_bf16_autocast_trains_on_cpu(tmp_path):
    """The mixed-precision path (bf16 autocast through accelerate) runs; the loss and weights stay finite float32."""
    net = make_trainer(tmp_path, mixed_precision="bf16", max_steps=3).fit()
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in net.parameters())
    assert newest_checkpoint(tmp_path).name == "step_000003"
