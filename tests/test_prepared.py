"""The prepared-data store (mmdiff.modalities.prepared): the same items as the folder datasets for the same keys, only
changed files redone, bad files named and remembered, a killed prepare never breaks the store, the `mmdiff prepare`
command and the training config path (`data.folder.prepare=true`)."""

import json
import logging
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import mmdiff.modalities.audio.prepared as audio_prepared
import mmdiff.modalities.prepared as prepared_module
from mmdiff.configs import config_dirs, recipe_dirs, register_recipes
from mmdiff.modalities.audio import AudioDecodeError, AudioFolder, MusicSynth, write_audio
from mmdiff.modalities.audio.prepared import PreparedAudioFolder, to_int16
from mmdiff.modalities.prepared import INDEX, prepare
from mmdiff.modalities.video import VideoFolder
from mmdiff.modalities.video.io import write_mp4
from mmdiff.modalities.video.prepared import PreparedVideoFolder

AUDIO_TOL = 1.6e-5  # int16: half a step of 1/32768 after resampling
VIDEO_TOL = 0.5 / 255 + 1e-6  # uint8 rounding of the resized frames


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMDIFF_CACHE", str(tmp_path / "cache"))


def _tunes(n, seed=0, sample_rate=16000, duration=1.0):
    return MusicSynth(size=n, sample_rate=sample_rate, duration=duration, seed=seed)


def _audio_folder(root):
    """wav at the training rate, wav and flac at other rates, a stereo file and a file shorter than a crop."""
    tunes = _tunes(4, sample_rate=22050, duration=1.2)
    write_audio(root / "a.wav", _tunes(1, sample_rate=16000)[0]["audio"], 16000)
    write_audio(root / "b.wav", tunes[0]["audio"], 22050)
    write_audio(root / "sub" / "c.flac", tunes[1]["audio"], 44100)
    write_audio(root / "d.flac", torch.cat([tunes[2]["audio"], -tunes[3]["audio"]]), 22050)  # stereo
    write_audio(root / "short.wav", tunes[3]["audio"][:, :3000], 22050)  # 0.14 s
    (root / "d.txt").write_text("a stereo tune")
    return root


def _items(dataset, seeds):
    """Items for ``seeds`` and every evaluation crop (one past the last too) of each file of ``dataset``."""
    out = []
    for i in range(len(dataset)):
        positions = list(range(dataset.num_crops(i) + 1))
        out.append(([dataset[i, seed] for seed in seeds], dataset.crops(i, positions)))
    return out


def _same_audio(folder, store, seeds=range(4), reference=None):
    """``store`` gives ``folder``'s items (``reference``: ``_items(folder, seeds)`` computed once)."""
    assert len(store) == len(folder)
    reference = reference or _items(folder, seeds)
    for i, ((items, crops), (got, got_crops)) in enumerate(zip(reference, _items(store, seeds), strict=True)):
        assert store.num_crops(i) == folder.num_crops(i)
        for a, b in zip(items + crops, got + got_crops, strict=True):
            assert a["caption"] == b["caption"] and a["audio"].shape == b["audio"].shape
            assert (a["audio"] - b["audio"]).abs().max() <= AUDIO_TOL, i


@pytest.mark.parametrize("short_policy", ["pad", "loop"])
@pytest.mark.parametrize("channels", [1, 2])
def test_audio_store_items_equal_folder_items(tmp_path, short_policy, channels):
    root = _audio_folder(tmp_path / "music")
    folder = AudioFolder(root, sample_rate=16000, channels=channels, duration=0.5, short_policy=short_policy)
    store = prepare(folder, workers=1, progress=False)
    assert isinstance(store, PreparedAudioFolder) and store.report.done == 5
    _same_audio(folder, store)
    assert store.captions == folder.captions and "a stereo tune" in store.captions
    assert store.sample_rate == 16000 and store.num_classes == 0  # the folder's attributes
    # the 16-bit file at the training rate round-trips bit for bit
    a, b = folder[0, 3]["audio"], store[0, 3]["audio"]
    assert torch.equal(a, b) if channels == 1 else True


def test_labels_and_int16_overshoot(tmp_path):
    root = tmp_path / "by_genre"
    tunes = _tunes(2)
    write_audio(root / "jazz" / "x.wav", tunes[0]["audio"], 16000)
    write_audio(root / "rock" / "y.wav", tunes[1]["audio"], 16000)
    folder = AudioFolder(root, sample_rate=16000, duration=0.5, labels="subfolder")
    store = prepare(folder, workers=1, progress=False)
    assert [int(store[i, 0]["label"]) for i in range(2)] == [0, 1] and store.class_names == ["jazz", "rock"]
    loud = np.array([[0.5, 1.7, -2.5, 0.0]], dtype=np.float32)  # a resampler's overshoot is scaled, not clipped
    q, scale = to_int16(loud)
    assert np.abs(q * scale - loud).max() < 2.5 / 32768 and q.min() == -32768
    q, scale = to_int16(np.array([[-1.0, 0.25, 32767 / 32768]], dtype=np.float32))
    assert scale == 1 / 32768 and q.tolist() == [[-32768, 8192, 32767]]


def _video_folder(root):
    g = torch.Generator().manual_seed(0)
    write_mp4(root / "long.mp4", torch.rand(3, 30, 40, 48, generator=g), 12)  # 2.5 s at 12 fps
    write_mp4(root / "sub" / "odd.mp4", torch.rand(3, 20, 36, 30, generator=g), 25)  # 0.8 s at 25 fps
    write_mp4(root / "short.mp4", torch.rand(3, 5, 24, 24, generator=g), 10)  # 0.5 s: shorter than a clip
    return root


@pytest.mark.parametrize("short_policy", ["loop", "pad"])
def test_video_store_items_equal_folder_items(tmp_path, short_policy):
    root = _video_folder(tmp_path / "videos")
    folder = VideoFolder(root, num_frames=8, fps=8, size=(16, 16), short_policy=short_policy)
    store = prepare(folder, workers=1, progress=False)
    assert isinstance(store, PreparedVideoFolder) and len(store) == 3
    for i in range(3):
        for seed in range(4):
            a, b = folder[i, seed]["video"], store[i, seed]["video"]
            assert a.shape == b.shape == (3, 8, 16, 16) and (a - b).abs().max() <= VIDEO_TOL, (i, seed)
        positions = list(range(folder.num_crops(i) + 1))
        for a, b in zip(folder.crops(i, positions), store.crops(i, positions), strict=True):
            assert (a["video"] - b["video"]).abs().max() <= VIDEO_TOL
    # the store holds source frames, so another fps and clip length (same frame size) reuse it
    other = VideoFolder(root, num_frames=4, fps=5, size=(16, 16), short_policy=short_policy)
    again = prepare(other, workers=1, progress=False)
    assert again.report.reused == 3 and again.report.done == 0
    assert (other[0, 7]["video"] - again[0, 7]["video"]).abs().max() <= VIDEO_TOL


def test_only_changed_or_added_files_are_redone_and_removed_ones_dropped(tmp_path, monkeypatch):
    decoded = []
    load = audio_prepared.load_audio
    monkeypatch.setattr(audio_prepared, "load_audio", lambda path, *a: decoded.append(path.name) or load(path, *a))
    root = tmp_path / "music"
    tunes = _tunes(5)
    for i in range(3):
        write_audio(root / f"t{i}.wav", tunes[i]["audio"], 16000)
    first = prepare(AudioFolder(root, sample_rate=16000, duration=0.5), workers=1, progress=False)
    assert sorted(decoded) == ["t0.wav", "t1.wav", "t2.wav"] and first.report.done == 3
    decoded.clear()
    again = prepare(AudioFolder(root, sample_rate=16000, duration=0.5), workers=1, progress=False)
    assert decoded == [] and (again.report.done, again.report.reused) == (0, 3)

    write_audio(root / "t1.wav", tunes[3]["audio"], 16000)  # changed content (and size/mtime)
    os.utime(root / "t1.wav", ns=(1, 1))  # a distinct mtime even on a coarse clock
    write_audio(root / "t3.wav", tunes[4]["audio"], 16000)  # added
    (root / "t2.wav").unlink()  # removed
    folder = AudioFolder(root, sample_rate=16000, duration=0.5)
    updated = prepare(folder, workers=1, progress=False)
    assert sorted(decoded) == ["t1.wav", "t3.wav"]
    report = updated.report
    assert (report.done, report.reused, report.removed, report.files) == (2, 1, 1, 3)
    assert report.dead_bytes > 0 and "dead, freed by --rebuild" in report.line()
    assert updated.names == ["t0.wav", "t1.wav", "t3.wav"]
    _same_audio(folder, updated, seeds=[0, 1])
    index = json.loads((updated.store.dir / INDEX).read_text())
    assert set(index["files"]) == {"t0.wav", "t1.wav", "t3.wav"}
    assert index["files"]["t1.wav"]["mtime_ns"] == 1 and len(list(updated.store.dir.glob("shard-*.bin"))) == 2

    decoded.clear()
    rebuilt = prepare(folder, workers=1, progress=False, rebuild=True)
    assert sorted(decoded) == ["t0.wav", "t1.wav", "t3.wav"] and rebuilt.report.dead_bytes == 0
    assert len(list(rebuilt.store.dir.glob("shard-*.bin"))) == 1
    _same_audio(folder, rebuilt, seeds=[2])


def test_bad_file_is_skipped_named_and_remembered(tmp_path, monkeypatch, caplog):
    root = tmp_path / "music"
    tunes = _tunes(3)
    for i in range(3):
        write_audio(root / f"t{i}.wav", tunes[i]["audio"], 16000)
    (root / "t2.txt").write_text("the third")
    tries = []
    load = audio_prepared.load_audio

    def load_or_fail(path, *args):
        tries.append(path.name)
        if path.name == "t1.wav":
            raise AudioDecodeError(path, "corrupt frame at 0.4 s")
        return load(path, *args)

    monkeypatch.setattr(audio_prepared, "load_audio", load_or_fail)
    folder = AudioFolder(root, sample_rate=16000, duration=0.5)
    with caplog.at_level(logging.WARNING, logger="mmdiff.data"):
        store = prepare(folder, workers=1, progress=False)
    assert f"prepared store: skipping {root / 't1.wav'}: corrupt frame at 0.4 s" in caplog.text
    assert store.report.skipped == 1 and store.names == ["t0.wav", "t2.wav"] and store.captions == ["", "the third"]
    assert torch.equal(store[1, 5]["audio"], folder[2, 5]["audio"])  # items after the bad file shift down
    tries.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmdiff.data"):
        again = prepare(folder, workers=1, progress=False)
    assert tries == [] and again.report.skipped == 1 and "left out t1.wav: corrupt frame at 0.4 s" in caplog.text
    os.utime(root / "t1.wav", ns=(5, 5))  # a changed file is tried again
    prepare(folder, workers=1, progress=False)
    assert tries == ["t1.wav"]


def test_a_killed_prepare_keeps_what_it_finished(tmp_path, monkeypatch):
    root = tmp_path / "music"
    tunes = _tunes(4)
    for i in range(4):
        write_audio(root / f"t{i}.wav", tunes[i]["audio"], 16000)
    folder = AudioFolder(root, sample_rate=16000, duration=0.5)
    load = audio_prepared.load_audio

    def killed_at_third(path, *args):
        if path.name == "t2.wav":
            raise KeyboardInterrupt  # the process dies here: nothing after this runs
        return load(path, *args)

    monkeypatch.setattr(prepared_module, "CHECKPOINT_SECONDS", 0.0)  # an index after every file
    monkeypatch.setattr(audio_prepared, "load_audio", killed_at_third)
    with pytest.raises(KeyboardInterrupt):
        prepare(folder, workers=1, progress=False)
    monkeypatch.setattr(audio_prepared, "load_audio", load)
    store_dir = next((tmp_path / "cache" / "prepared").iterdir())
    assert set(json.loads((store_dir / INDEX).read_text())["files"]) == {"t0.wav", "t1.wav"}
    resumed = prepare(folder, workers=1, progress=False)
    assert (resumed.report.reused, resumed.report.done) == (2, 2)
    _same_audio(folder, resumed, seeds=[0])


def test_partial_shards_torn_index_and_short_shards_are_never_used(tmp_path, caplog):
    root = _audio_folder(tmp_path / "music")
    folder = AudioFolder(root, sample_rate=16000, duration=0.5)
    store = prepare(folder, workers=1, progress=False)
    reference = _items(folder, [1])
    directory = store.store.dir
    # a prepare killed before its index: a shard no index names and a half-written temporary index
    (directory / "shard-000007.bin").write_bytes(b"\x01" * 1000)
    (directory / f"{INDEX}.tmp-999").write_text('{"files": {"a.wav"')
    again = prepare(folder, workers=1, progress=False)
    assert again.report.reused == 5 and not (directory / "shard-000007.bin").exists()
    _same_audio(folder, again, [1], reference)
    # a shard cut short (a disk that lost its tail): the files in the lost part are redone
    shard = directory / "shard-000001.bin"
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 10)
    cut = prepare(folder, workers=1, progress=False)
    assert cut.report.done == 1 and cut.report.reused == 4
    _same_audio(folder, cut, [1], reference)
    # an unreadable index: a warning, and the store is rebuilt
    (directory / INDEX).write_text("{")
    with caplog.at_level(logging.WARNING, logger="mmdiff.data"):
        rebuilt = prepare(folder, workers=1, progress=False)
    assert "rebuilding it: index.json it cannot be read" in caplog.text and rebuilt.report.done == 5
    _same_audio(folder, rebuilt, [1], reference)


def test_many_shards_worker_processes_and_pickling(tmp_path, monkeypatch):
    monkeypatch.setattr(prepared_module, "SHARD_BYTES", 20_000)  # a new shard every ~0.6 s of audio
    root = _audio_folder(tmp_path / "music")
    folder = AudioFolder(root, sample_rate=16000, duration=0.5)
    store = prepare(folder, workers=2, progress=False)  # a process pool of 2
    assert len(list(store.store.dir.glob("shard-*.bin"))) >= 3
    _same_audio(folder, store, seeds=[0, 1])
    copy = pickle.loads(pickle.dumps(store))  # what a spawned DataLoader worker gets: no mapped bytes copied
    assert copy.store._maps == {} and torch.equal(copy[2, 9]["audio"], store[2, 9]["audio"])


def _compose(overrides):
    register_recipes(recipe_dirs())
    with initialize_config_dir(str(config_dirs()[0]), version_base="1.3"):
        return compose("config", overrides=overrides)


def test_training_config_reads_the_store(tmp_path):
    root = _audio_folder(tmp_path / "music")
    cfg = _compose(["recipe=audio_music_cpu", f"data.root={root}", "data.duration=0.5", "data.folder.prepare=true"])
    dataset = instantiate(cfg.data)
    assert isinstance(dataset, PreparedAudioFolder) and dataset.report.done == 5
    assert str(tmp_path / "cache" / "prepared") in str(dataset.store.dir)
    plain = instantiate(_compose(["recipe=audio_music_cpu", f"data.root={root}", "data.duration=0.5"]).data)
    assert type(plain) is AudioFolder
    _same_audio(plain, dataset, seeds=[4])

    videos = _video_folder(tmp_path / "videos")
    where = tmp_path / "my_store"
    cfg = _compose(
        [
            "recipe=video_shapes_cpu",
            f"data.root={videos}",
            "data.folder.prepare=true",
            f"data.folder.prepared_dir={where}",
        ]
    )
    dataset = instantiate(cfg.data)
    assert isinstance(dataset, PreparedVideoFolder) and dataset.store.dir == where and (where / INDEX).is_file()
    item = dataset[1, 3]["video"]
    assert item.shape == (3, cfg.data.num_frames, *cfg.data.resolution)


def _mmdiff(args, cwd, env):
    proc = subprocess.run([sys.executable, "-m", "mmdiff", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"mmdiff {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_prepare_command(tmp_path):
    root = _audio_folder(tmp_path / "music")
    (root / "broken.wav").write_text("not audio")
    env = {**os.environ, "MMDIFF_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    args = ["prepare", "recipe=audio_music_cpu", f"data.root={root}", "data.duration=0.5"]
    first = _mmdiff(args, tmp_path, env)
    assert "5 files, 4.1 s of audio" in first.stdout and "5 done, 0 reused, 0 skipped" in first.stdout
    assert f"AudioFolder: skipping {root / 'broken.wav'}" in first.stderr
    again = _mmdiff([*args, "--workers", "1"], tmp_path, env)
    assert "0 done, 5 reused" in again.stdout
    rebuilt = _mmdiff([*args, "--rebuild"], tmp_path, env)
    assert "5 done, 0 reused" in rebuilt.stdout
    folder = AudioFolder(root, sample_rate=16000, duration=0.5)  # the store the training config would use
    assert prepare(folder, workers=1, progress=False).report.reused == 5
    bad = subprocess.run(
        [sys.executable, "-m", "mmdiff", "prepare", "recipe=audio_music_cpu"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "data.root=PATH is required" in bad.stderr
