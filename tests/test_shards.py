"""Streaming shards (issue 14): folder -> WebDataset-style tar shards -> a seeded, resumable, worker-independent stream.

Media files are made in ``tmp_path`` with the project's writers; every test is CPU-sized (a few seconds).
"""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from mmdiff.data import SeededDataset, StreamingDataset
from mmdiff.modalities.audio import write_audio
from mmdiff.modalities.audio.folder import AudioFolder
from mmdiff.modalities.shards import AudioShards, VideoShards, read_index, write_shards
from mmdiff.modalities.video.folder import VideoFolder
from mmdiff.modalities.video.io import read_clip, write_mp4
from mmdiff.train.stream import StreamBatchSampler, item_seed, streaming_batches

RATE = 8000


def _audio_folder(root, files: int = 7, bad: bool = True):
    """``files`` tones of 0.6-2.2 s under two class folders, captions from a table and a sidecar, one corrupt file."""
    rows = []
    for i in range(files):
        t = torch.arange(int(RATE * (0.6 + 0.25 * i))) / RATE
        sub = "low" if i % 2 else "high"
        tone = 0.4 * torch.sin(2 * math.pi * (220 + 40 * i) * t) + 0.05 * torch.randn(2, t.numel())  # (2, T)
        write_audio(root / sub / f"tone{i}.wav", tone, RATE)
        rows.append({"file_name": f"{sub}/tone{i}.wav", "caption": f"tone number {i}"})
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    if bad:
        (root / "high" / "broken.wav").write_bytes(b"RIFF not really a wave file" * 4)
    return root


@pytest.fixture(scope="module")
def audio_shards(tmp_path_factory):
    """(folder dataset, shards folder) with 7 labelled, captioned files in 3 shards (3 + 3 + 1 items)."""
    root = _audio_folder(tmp_path_factory.mktemp("music"))
    folder = AudioFolder(root, sample_rate=RATE, channels=1, duration=0.5, labels="subfolder")
    out = tmp_path_factory.mktemp("shards") / "music"
    write_shards(folder, str(out), name="music", shard_size=3, workers=2, progress=False)
    return folder, out


def test_audio_round_trip_same_items_captions_labels(audio_shards):
    folder, out = audio_shards
    shards = AudioShards(str(out), duration=0.5, sample_rate=RATE, channels=1)
    index = read_index(str(out))
    assert [(s["name"], s["items"]) for s in index["shards"]] == [
        ("music-000000.tar", 3),
        ("music-000001.tar", 3),
        ("music-000002.tar", 1),
    ]
    assert len(shards) == len(folder) == 7 and shards.class_names == folder.class_names == ["high", "low"]
    assert isinstance(shards, StreamingDataset) and not isinstance(folder, StreamingDataset)
    for i in range(len(folder)):
        for seed in (0, 12345):  # the same crop start for the same seed as the folder dataset draws
            got, want = shards[(i, seed)], folder[(i, seed)]
            assert got["audio"].shape == want["audio"].shape == (1, 4000)
            torch.testing.assert_close(got["audio"], want["audio"], atol=2e-7, rtol=0)  # 24-bit FLAC
            assert got["caption"] == want["caption"] == f"tone number {int(folder.clips[i].path.stem[4:])}"
            assert int(got["label"]) == int(want["label"])
    # short files (0.6 s < 1 s) are padded like the folder's pad policy; loop is a reading-time choice
    n = round(folder.clips[0].duration * RATE)  # 4800 samples
    looped = AudioShards(str(out), duration=1.0, short_policy="loop")[(0, 3)]["audio"]
    padded = AudioShards(str(out), duration=1.0)[(0, 3)]["audio"]
    torch.testing.assert_close(looped[:, n:], looped[:, : 8000 - n], atol=0, rtol=0)
    torch.testing.assert_close(padded[:, :n], looped[:, :n], atol=0, rtol=0)
    assert padded[:, n:].abs().max() == 0


def test_write_shards_names_and_counts_bad_files(tmp_path, monkeypatch, caplog):
    root = _audio_folder(tmp_path / "music", files=3)
    with caplog.at_level(logging.WARNING, logger="mmdiff.data"):
        folder = AudioFolder(root, sample_rate=RATE, duration=0.5)
    import mmdiff.modalities.audio.io as audio_io

    real = audio_io.load_audio

    def failing(path, *args, **kwargs):  # a file whose header reads but whose decoding fails
        if path.name == "tone1.wav":
            raise audio_io.AudioDecodeError(path, "decoding failed (a test)")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(audio_io, "load_audio", failing)
    with caplog.at_level(logging.WARNING, logger="mmdiff.data"):
        index = write_shards(folder, "memory://bad_files", progress=False)
    assert index["items"] == 2 and len(index["skipped"]) == 2
    assert {s["file"].rsplit("/", 1)[1] for s in index["skipped"]} == {"broken.wav", "tone1.wav"}
    assert "2 skipped" in index["summary"]
    assert any("tone1.wav" in r.getMessage() and "decoding failed" in r.getMessage() for r in caplog.records)
    assert any("broken.wav" in r.getMessage() for r in caplog.records)
    assert read_index("memory://bad_files")["skipped"] == index["skipped"]
    with pytest.raises(ValueError, match="already holds shards.json"):
        write_shards(folder, "memory://bad_files", progress=False)


def test_memory_filesystem_and_config_source(tmp_path):
    from mmdiff.modalities.audio.sources import music_or_folder

    root = _audio_folder(tmp_path / "music", files=2, bad=False)
    folder = AudioFolder(root, sample_rate=RATE, duration=0.25)
    write_shards(folder, "memory://cfg/music", shard_size=1, progress=False)
    data = music_or_folder(
        root=None, sample_rate=RATE, duration=0.25, folder={"channels": 1}, shards="memory://cfg/music"
    )
    assert isinstance(data, AudioShards) and data.num_samples == 2000 and len(data) == 2
    torch.testing.assert_close(data[(1, 9)]["audio"], folder[(1, 9)]["audio"], atol=2e-7, rtol=0)
    with pytest.raises(ValueError, match="sample_rate=8000, the config asks for 16000"):
        music_or_folder(sample_rate=16000, shards="memory://cfg/music")
    with pytest.raises(FileNotFoundError, match="no shards.json at memory://nothing"):
        AudioShards("memory://nothing")
    with pytest.raises(ValueError, match="holds audio shards, not video"):
        VideoShards("memory://cfg/music")


def test_video_round_trip_clips_equal_timestamp_reads(tmp_path):
    fps, size = 8.0, (16, 16)
    g = torch.Generator().manual_seed(0)
    for i, frames in enumerate((12, 3)):  # 1.5 s and a 0.375 s video (shorter than a clip)
        clip = torch.rand(3, 1, 20, 24, generator=g).expand(3, frames, 20, 24).clone()
        clip[:, :, : 2 + frames // 2] = torch.linspace(0, 1, frames)[None, :, None, None]  # content changes per frame
        write_mp4(tmp_path / "videos" / f"v{i}.mp4", clip, fps)
        (tmp_path / "videos" / f"v{i}.txt").write_text(f"video {i}")
    folder = VideoFolder(tmp_path / "videos", num_frames=4, fps=fps, size=size)
    write_shards(folder, str(tmp_path / "shards"), progress=False)
    shards = VideoShards(str(tmp_path / "shards"), num_frames=4, fps=fps, size=size)
    assert len(shards) == 2 and shards.num_classes == 0
    for i, video in enumerate(folder.videos):
        for seed in (1, 2, 3):
            item = shards[(i, seed)]
            stored = math.ceil(video.duration * fps - 1e-6)
            first = int(torch.randint(0, max(1, stored - 4 + 1), (1,), generator=torch.Generator().manual_seed(seed)))
            first = first if stored >= 4 else 0
            want = read_clip(video.path, 4, fps, size, start=first / fps, short_policy="loop")
            assert item["video"].shape == (3, 4, 16, 16) and item["caption"] == f"video {i}"
            torch.testing.assert_close(item["video"], want, atol=0.5 / 255 + 1e-6, rtol=0)  # uint8 storage


def _batches(out, n, **kwargs):
    settings = dict(batch_size=2, seed=7, rank=0, world_size=1, start_micro_batch=0, num_workers=0, pin_memory=False)
    stream = streaming_batches(AudioShards(str(out), duration=0.5), **{**settings, **kwargs})
    return [next(stream) for _ in range(n)]


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if torch.is_tensor(a[key]):
            torch.testing.assert_close(a[key], b[key], atol=0, rtol=0)
        else:
            assert a[key] == b[key]


def test_stream_is_deterministic_and_worker_count_independent(audio_shards):
    _, out = audio_shards
    plain = _batches(out, 8)  # 16 positions: two whole epochs of 7 items and a bit
    assert [b["audio"].shape for b in plain] == [(2, 1, 4000)] * 8
    assert [int(s) for b in plain for s in b["_seed"]] == [item_seed(7, p) for p in range(16)]
    captions = [c for b in plain for c in b["caption"]]
    assert sorted(captions[:7]) == sorted(captions[7:14]) == [f"tone number {i}" for i in range(7)]  # each once
    assert captions[:7] != captions[7:14]  # epochs take a new order
    for a, b in zip(plain, _batches(out, 8)):
        _same(a, b)
    for a, b in zip(plain, _batches(out, 8, num_workers=2)):
        _same(a, b)
    other_seed = _batches(out, 4, seed=8)
    assert [c for b in other_seed for c in b["caption"]] != captions[:8]


def test_exact_resume_with_workers(audio_shards):
    _, out = audio_shards
    whole = _batches(out, 9, num_workers=2)
    resumed = _batches(out, 4, num_workers=2, start_micro_batch=5)
    for a, b in zip(whole[5:], resumed):
        _same(a, b)


def test_two_ranks_split_a_global_batch_like_the_sampler(audio_shards):
    _, out = audio_shards
    single = _batches(out, 4, batch_size=4)
    ranks = [_batches(out, 4, batch_size=2, rank=r, world_size=2) for r in (0, 1)]
    for m in range(4):
        joined = {
            "audio": torch.cat([ranks[0][m]["audio"], ranks[1][m]["audio"]]),
            "_seed": torch.cat([ranks[0][m]["_seed"], ranks[1][m]["_seed"]]),
            "label": torch.cat([ranks[0][m]["label"], ranks[1][m]["label"]]),
            "caption": ranks[0][m]["caption"] + ranks[1][m]["caption"],
        }
        _same(single[m], joined)
        sampler = [StreamBatchSampler(7, 2, 7, r, 2).micro_batch(m) for r in (0, 1)]
        assert [int(s) for s in joined["_seed"]] == [seed for part in sampler for _, seed in part]


def test_write_shards_command_and_webdataset_reads_the_shards(tmp_path, capsys):
    from mmdiff.cli import main

    root = _audio_folder(tmp_path / "music", files=2)
    out = tmp_path / "shards"
    args = ["write-shards", "recipe=audio_music_cpu", f"data.root={root}", f"out={out}", "shard_size=1"]
    assert main([*args, "progress=false"]) == 0
    captured = capsys.readouterr()
    assert "2 audio files" in captured.out and "2 shard(s)" in captured.out and "1 skipped" in captured.out
    assert "broken.wav" in captured.err
    assert main([*args, "progress=false"]) == 2 and "already holds shards.json" in capsys.readouterr().err
    data = AudioShards(str(out), sample_rate=16000, duration=0.25)
    assert len(data) == 2 and isinstance(data, StreamingDataset) and isinstance(data, SeededDataset)

    wds = pytest.importorskip("webdataset")  # the reference reader sees WebDataset samples
    tars = sorted(str(p) for p in out.glob("data-*.tar"))
    samples = list(wds.WebDataset(tars, shardshuffle=False))
    assert [sorted(k for k in s if not k.startswith("__")) for s in samples] == [["flac", "json", "txt"]] * 2
    assert [(s["txt"].decode(), s["__key__"]) for s in samples] == [
        ("tone number 0", "000000000"),
        ("tone number 1", "000000001"),
    ]
