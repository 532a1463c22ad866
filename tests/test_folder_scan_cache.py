"""The folder scan cache (issue 14): headers remembered between runs, only new or changed files read again, and the
parallel first scan identical to a serial one. Every test points ``MMDIFF_CACHE`` at its own tmp folder."""

from __future__ import annotations

import importlib
import json
import os
import threading

import pytest
import torch

from mmdiff.modalities import folders
from mmdiff.modalities.audio import AudioFolder, write_audio
from mmdiff.modalities.audio.io import audio_info
from mmdiff.modalities.cache import cache_root
from mmdiff.modalities.folders import scan_folder
from mmdiff.modalities.video import VideoFolder, write_mp4

SR = 8000
audio_folder_module = importlib.import_module("mmdiff.modalities.audio.folder")
video_folder_module = importlib.import_module("mmdiff.modalities.video.folder")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache root of the test's own (never the real ~/.cache)."""
    monkeypatch.setenv("MMDIFF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def reads(monkeypatch):
    """The files whose audio header is read (``audio_info`` calls), in call order, with the reading thread."""
    calls: list[tuple[str, str]] = []
    lock = threading.Lock()

    def counting(path):
        with lock:
            calls.append((path.name, threading.current_thread().name))
        return audio_info(path)

    monkeypatch.setattr(audio_folder_module, "audio_info", counting)
    return calls


def tone(seconds: float, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(1, round(seconds * SR), generator=torch.Generator().manual_seed(seed))  # (1, T)


def make_folder(root, n: int = 4):
    """``n`` wav files of 0.5 s + 0.1 s per index, one flac, one file that is not audio, one empty mp3."""
    for i in range(n):
        write_audio(root / f"clip{i}.wav", tone(0.5 + 0.1 * i, i), SR)
    write_audio(root / "sub" / "song.flac", tone(1.0), SR)
    (root / "noise.wav").write_text("not audio")
    (root / "empty.mp3").touch()
    return root


def scan_files(cache_dir):
    return sorted((cache_dir / "scans").glob("*.json")) if (cache_dir / "scans").is_dir() else []


def skip_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mmdiff.data" and "skipping" in r.getMessage()]


def test_second_scan_reads_nothing_and_gives_equal_records(tmp_path, cache, reads, caplog):
    root = make_folder(tmp_path / "music")
    first = AudioFolder(root, sample_rate=SR, duration=0.5)
    assert len(reads) == 7 and first.scan_report.probed == 7 and first.scan_report.cached == 0
    assert len(first) == 5 and len(first.skipped) == 2
    [cache_file] = scan_files(cache)
    assert first.scan_report.cache_file == cache_file and cache_file.parent == cache_root() / "scans"
    stored = json.loads(cache_file.read_text())["files"]
    assert set(stored) == {
        "clip0.wav",
        "clip1.wav",
        "clip2.wav",
        "clip3.wav",
        "sub/song.flac",
        "noise.wav",
        "empty.mp3",
    }
    assert stored["sub/song.flac"][2] == audio_info(root / "sub" / "song.flac")  # exactly what the header said
    assert stored["empty.mp3"][2] is None and "empty" in stored["empty.mp3"][3][0]
    reads.clear()
    caplog.clear()
    mtime = cache_file.stat().st_mtime_ns
    second = AudioFolder(root, sample_rate=SR, duration=0.5)
    assert reads == [] and second.scan_report.probed == 0 and second.scan_report.cached == 7
    assert second.clips == first.clips and second.skipped == first.skipped
    assert cache_file.stat().st_mtime_ns == mtime  # nothing changed: nothing written
    assert len(skip_warnings(caplog)) == 2  # skipped files are still named on every scan
    assert "scan: 0 probed, 7 from cache" in second.summary()
    assert AudioFolder(root, sample_rate=SR, duration=0.5, scan_cache=False).clips == first.clips


def test_changed_added_and_removed_files(tmp_path, cache, reads):
    root = make_folder(tmp_path / "music")
    AudioFolder(root, sample_rate=SR, duration=0.5)
    write_audio(root / "clip1.wav", tone(2.0, 9), SR)  # new content, new size
    stat = (root / "clip2.wav").stat()
    os.utime(root / "clip2.wav", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touched: same size
    write_audio(root / "sub" / "new.wav", tone(0.7, 5), SR)
    (root / "clip3.wav").unlink()
    reads.clear()
    again = AudioFolder(root, sample_rate=SR, duration=0.5)
    assert sorted(name for name, _ in reads) == ["clip1.wav", "clip2.wav", "new.wav"]
    assert again.scan_report.probed == 3 and again.scan_report.cached == 4  # 3 good + 2 skipped - 1 removed
    assert again.clips == AudioFolder(root, sample_rate=SR, duration=0.5, scan_cache=False).clips
    assert {c.path.name: round(c.duration, 3) for c in again.clips}["clip1.wav"] == 2.0
    stored = json.loads(scan_files(cache)[0].read_text())["files"]
    assert "clip3.wav" not in stored and "sub/new.wav" in stored
    reads.clear()
    AudioFolder(root, sample_rate=SR, duration=0.5)
    assert reads == []


def test_a_skipped_file_stays_skipped_from_the_cache_until_it_changes(tmp_path, cache, reads, caplog):
    root = make_folder(tmp_path / "music", n=1)
    first = AudioFolder(root, sample_rate=SR, duration=0.5)
    reads.clear()
    caplog.clear()
    second = AudioFolder(root, sample_rate=SR, duration=0.5)
    assert reads == [] and second.skipped == first.skipped
    warnings = skip_warnings(caplog)
    assert any(str(root / "noise.wav") in w and "could not open" in w for w in warnings), warnings
    assert any(str(root / "empty.mp3") in w and "empty (0 bytes)" in w for w in warnings), warnings
    assert "2 skipped (1 FFmpeg could not open it, 1 the file is empty)" in second.summary()
    write_audio(root / "empty.mp3", tone(1.0), SR)  # repaired
    third = AudioFolder(root, sample_rate=SR, duration=0.5)
    assert [name for name, _ in reads] == ["empty.mp3"]
    assert "empty.mp3" in {c.path.name for c in third.clips} and len(third.skipped) == 1


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00garbage", b'{"files": []}', b"[1, 2]", "truncated"],
)
def test_a_corrupt_cache_file_is_ignored_with_a_warning_and_rewritten(tmp_path, cache, reads, caplog, content):
    root = make_folder(tmp_path / "music", n=2)
    first = AudioFolder(root, sample_rate=SR, duration=0.5)
    [cache_file] = scan_files(cache)
    if content == "truncated":
        text = cache_file.read_text()
        content = text[: len(text) // 2].encode()
    elif content == b'{"files": []}':
        data = json.loads(cache_file.read_text())
        data["files"]["clip0.wav"] = [1, 2, {"duration": 1.0}, ["x", True, "x"]]  # both info and skip: malformed
        content = json.dumps(data).encode()
    cache_file.write_bytes(content)
    reads.clear()
    caplog.clear()
    again = AudioFolder(root, sample_rate=SR, duration=0.5)
    messages = [r.getMessage() for r in caplog.records if "scan cache" in r.getMessage()]
    assert len(messages) == 1 and str(cache_file) in messages[0] and "rewriting" in messages[0], messages
    assert len(reads) == 5 and again.clips == first.clips and again.skipped == first.skipped
    assert set(json.loads(cache_file.read_text())["files"]) == {
        "clip0.wav",
        "clip1.wav",
        "sub/song.flac",
        "noise.wav",
        "empty.mp3",
    }
    reads.clear()
    AudioFolder(root, sample_rate=SR, duration=0.5)
    assert reads == []


def test_settings_change_decides_again_from_cached_headers(tmp_path, cache, reads):
    root = tmp_path / "music"
    for i, seconds in enumerate([0.25, 0.5, 1.0]):
        write_audio(root / f"clip{i}.wav", tone(seconds, i), SR)
    assert len(AudioFolder(root, sample_rate=SR, duration=0.5)) == 3  # short_policy="pad": all used
    reads.clear()
    for duration, used in [
        (0.5, ["clip1.wav", "clip2.wav"]),
        (0.8, ["clip2.wav"]),
        (0.2, ["clip0.wav", "clip1.wav", "clip2.wav"]),
    ]:
        cached = AudioFolder(root, sample_rate=SR, duration=duration, short_policy="skip")
        uncached = AudioFolder(root, sample_rate=SR, duration=duration, short_policy="skip", scan_cache=False)
        assert [c.path.name for c in cached.clips] == used
        assert cached.clips == uncached.clips and cached.skipped == uncached.skipped
        assert cached.scan_report.probed == 0
    assert len(reads) == 3 * 3  # only the scan_cache=False datasets read headers
    summary = AudioFolder(root, sample_rate=SR, duration=0.8, short_policy="skip").summary()
    assert "2 skipped (2 shorter than 0.8 s)" in summary


def test_parallel_scan_equals_serial_scan(tmp_path, cache, reads, caplog):
    root = tmp_path / "many"
    for i in range(folders.PARALLEL_MIN_FILES + 8):
        suffix = ".flac" if i % 3 else ".wav"
        write_audio(root / f"d{i % 4}" / f"f{i:03d}{suffix}", tone(0.1 + 0.01 * i, i), SR)
    for i in (5, 17):
        (root / f"bad{i}.mp3").write_bytes(b"\x00" * i)
    dataset = AudioFolder.__new__(AudioFolder)
    dataset.duration, dataset.short_policy = 0.5, "pad"
    scans, warnings = [], []
    for workers in (1, 4):
        caplog.clear()
        reads.clear()
        scan = scan_folder(
            "AudioFolder",
            "audio",
            root,
            [".wav", ".flac", ".mp3"],
            dataset._probe,
            header=dataset._header,
            scan_cache=False,
            workers=workers,
        )
        scans.append(scan)
        warnings.append(skip_warnings(caplog))
        threads = {thread for _, thread in reads}
        assert len(reads) == len(scan.records) + len(scan.skipped)
        assert (workers > 1) == any(t.startswith("mmdiff-scan") for t in threads), threads
    serial, parallel = scans
    assert parallel.records == serial.records and parallel.skipped == serial.skipped
    assert [r.path for r in serial.records] == sorted(r.path for r in serial.records)
    assert warnings[0] == warnings[1] and len(warnings[0]) == 2
    assert scan_files(cache) == []  # scan_cache=False writes nothing


def test_scan_cache_false_writes_nothing_and_reads_every_header(tmp_path, cache, reads):
    root = make_folder(tmp_path / "music", n=2)
    for _ in range(2):
        reads.clear()
        dataset = AudioFolder(root, sample_rate=SR, duration=0.5, scan_cache=False)
        assert len(reads) == 5 and dataset.scan_report.cache_file is None
    assert not cache.exists()


def test_a_cache_folder_that_cannot_be_written_is_warned_about_once(tmp_path, monkeypatch, reads, caplog):
    (tmp_path / "a_file").write_text("a file, so no folder can be made under it (even by root)")
    monkeypatch.setenv("MMDIFF_CACHE", str(tmp_path / "a_file" / "cache"))
    monkeypatch.setattr(folders, "_unwritable", set())
    root = make_folder(tmp_path / "music", n=2)
    first = AudioFolder(root, sample_rate=SR, duration=0.5)
    second = AudioFolder(root, sample_rate=SR, duration=0.5)
    assert second.clips == first.clips and len(reads) == 10
    messages = [r.getMessage() for r in caplog.records if "cannot write the scan cache" in r.getMessage()]
    assert len(messages) == 1 and str(tmp_path / "a_file" / "cache" / "scans") in messages[0]


def test_captions_are_read_again_on_every_scan(tmp_path, cache):
    root = make_folder(tmp_path / "music", n=2)
    (root / "clip0.txt").write_text("first words")
    assert AudioFolder(root, sample_rate=SR, duration=0.5).captions[0] == "first words"
    (root / "clip0.txt").write_text("edited words")
    again = AudioFolder(root, sample_rate=SR, duration=0.5)
    assert again.captions[0] == "edited words" and again.scan_report.probed == 0


def test_listing_matches_sorted_rglob(tmp_path):
    root = tmp_path / "root"
    for rel in ["a/b.wav", "a-c.wav", "A.WAV", ".hidden.wav", "z/y/x.Flac", "a/B/c.wav", "metadata.csv", "no.txt"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "dir.wav").mkdir()
    (root / "sub" / "metadata.jsonl").parent.mkdir()
    (root / "sub" / "metadata.jsonl").write_bytes(b"{}")
    os.symlink(root / "a" / "b.wav", root / "link.wav")
    os.symlink(root / "missing.wav", root / "broken.wav")
    os.symlink(root / "z", root / "linked_dir")  # not entered, as rglob does not
    extensions = (".wav", ".flac", ".jsonl", ".csv")
    tables = {root / name for name in folders.METADATA_TABLES}
    expected = sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file() and p not in tables)
    listing, texts = folders._list_files(root, extensions)
    assert texts == {"no.txt"}
    assert [root / rel for rel, _, _ in listing] == expected
    names = [rel for rel, _, _ in listing]
    assert names.index("a/b.wav") < names.index("a-c.wav")  # Path order (by component), not string order ("-" < "/")
    sizes = {rel: size for rel, size, _ in listing}
    assert sizes["link.wav"] == 1 and sizes["sub/metadata.jsonl"] == 2


def test_video_folder_scan_is_cached(tmp_path, cache, monkeypatch):
    root = tmp_path / "videos"
    frames = torch.rand(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))  # (3, F, H, W)
    write_mp4(root / "a.mp4", frames, 4.0)
    write_mp4(root / "b" / "long.mp4", torch.cat([frames, frames, frames], dim=1), 4.0)
    (root / "bad.mp4").write_text("not a video")
    first = VideoFolder(root, num_frames=4, fps=4.0, size=(16, 16))
    assert first.scan_report.probed == 3 and len(first) == 2
    calls = []
    monkeypatch.setattr(video_folder_module, "video_info", lambda path: calls.append(path))
    again = VideoFolder(root, num_frames=4, fps=4.0, size=(16, 16))
    assert calls == [] and again.videos == first.videos and again.skipped == first.skipped
    skip = VideoFolder(root, num_frames=8, fps=4.0, size=(16, 16), short_policy="skip")  # 1 s and 3 s videos, 2 s clips
    assert calls == [] and [v.path.name for v in skip.videos] == ["long.mp4"]
    summary = skip.summary()
    assert "2 skipped (1 FFmpeg could not open it, 1 shorter than a clip (2 s))" in summary, summary
    assert "formats .mp4 (1)" in summary and "scan: 0 probed, 3 from cache" in summary
