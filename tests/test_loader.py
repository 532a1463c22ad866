"""Training data loading: the num_workers=auto rule and the trainer reading a streaming dataset (shards) exactly as
a map-style one, with exact resume."""

import logging

import pytest
import torch
from test_training import DiesAt, Interrupt, make_trainer

from mmdiff.checkpoints import newest_checkpoint
from mmdiff.core import DiffusionLoss, DiffusionModel, vp_cosine
from mmdiff.data import StreamingDataset
from mmdiff.modalities.points import MixturePoints
from mmdiff.train.loader import MAX_AUTO_WORKERS, auto_workers, resolve_workers


class FileData:
    """A dataset that reads files (no ``reads_files`` attribute: treated as reading files)."""


@pytest.mark.parametrize(
    ("dataset", "device", "processes", "cores", "expected"),
    [
        (MixturePoints(size=8), "cpu", 1, 2, 0),  # in memory on a CPU: the step keeps every core
        (FileData(), "cpu", 1, 2, 0),  # files on 2 cores: one process, the step needs both
        (FileData(), "cpu", 1, 16, 4),  # files with cores to spare: half the rest, at most 4
        (FileData(), "cpu", 2, 8, 1),
        (MixturePoints(size=8), "cuda", 1, 16, MAX_AUTO_WORKERS),  # a GPU outruns one CPU thread, even on a synth
        (FileData(), "cuda", 4, 16, 3),  # 4 processes share 16 cores: 3 workers each beside the main thread
        (FileData(), "cuda", 1, 1, 0),
    ],
)
def test_auto_workers_follow_the_device_the_data_and_the_cores(dataset, device, processes, cores, expected):
    assert auto_workers(dataset, device, processes, cores) == expected


def test_num_workers_takes_auto_or_a_count_and_names_a_bad_value():
    assert resolve_workers(3, MixturePoints(size=8), "cpu") == 3
    assert resolve_workers("auto", MixturePoints(size=8), "cpu") == 0
    for bad in (-1, "four", 1.5, True):
        with pytest.raises(ValueError, match="trainer.num_workers: expected auto or an integer >= 0"):
            resolve_workers(bad, MixturePoints(size=8), "cpu")


class PointStream:
    """The ring points as a streaming dataset (the protocol shards follow): epoch ``e`` in an order seeded by
    ``epoch_seed(e)``; ``reads`` counts the items read, to show that a resumed run does not read its past."""

    def __init__(self, size=256, components=8):
        self.points = MixturePoints(size=size, components=components)
        self.num_classes, self.reads = components, 0

    def __len__(self):
        return len(self.points)

    def stream(self, positions, epoch_seed, item_seed):
        order, epoch = None, -1
        for p in positions:
            if p // len(self) != epoch:
                epoch = p // len(self)
                order = torch.randperm(len(self), generator=torch.Generator().manual_seed(epoch_seed(epoch)))
            self.reads += 1
            yield self.points[(int(order[p % len(self)]), item_seed(p))]


def test_the_trainer_streams_a_streaming_dataset_and_resumes_it_exactly(tmp_path, caplog):
    assert isinstance(PointStream(), StreamingDataset)
    with caplog.at_level(logging.INFO, logger="mmdiff.train"):
        straight = make_trainer(tmp_path / "straight", dataset=PointStream(), max_steps=8, checkpoint_every=3).fit()
    assert "data: 0 loader worker(s) per process (trainer.num_workers=auto)" in caplog.text
    loss = DiffusionLoss(DiffusionModel(vp_cosine(), "v"), weighting="min_snr")
    with pytest.raises(Interrupt):  # dies during step 5, after the checkpoint at step 3
        make_trainer(tmp_path / "killed", DiesAt(loss, 5), dataset=PointStream(), max_steps=8, checkpoint_every=3).fit()
    assert newest_checkpoint(tmp_path / "killed").name == "step_000003"
    stream = PointStream()
    resumed = make_trainer(tmp_path / "killed", dataset=stream, max_steps=8, checkpoint_every=3, resume="auto").fit()
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    assert stream.reads <= 5 * 16 + 2 * 16  # steps 4-8 of batch 16 (and a loader's read-ahead), not steps 1-3 again


def test_a_map_dataset_with_loader_workers_trains_like_one_without(tmp_path):
    """Worker processes change where items are made, not which: the same weights with 0 and 2 workers."""
    a = make_trainer(tmp_path / "a", num_workers=0, max_steps=4, sample_every=0).fit()
    b = make_trainer(tmp_path / "b", num_workers=2, max_steps=4, sample_every=0).fit()
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


def test_a_killed_run_with_loader_workers_resumes_exactly(tmp_path):
    """Exact resume holds with worker processes: the resumed loader starts at the checkpoint's micro-batch."""
    straight = make_trainer(tmp_path / "straight", num_workers=2, max_steps=6, checkpoint_every=3).fit()
    loss = DiffusionLoss(DiffusionModel(vp_cosine(), "v"), weighting="min_snr")
    with pytest.raises(Interrupt):
        make_trainer(tmp_path / "killed", DiesAt(loss, 5), num_workers=2, max_steps=6, checkpoint_every=3).fit()
    resumed = make_trainer(tmp_path / "killed", num_workers=2, max_steps=6, checkpoint_every=3, resume="auto").fit()
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
