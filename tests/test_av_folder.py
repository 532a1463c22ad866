"""AudioVideoFolder: videos with sound as (video, audio) clips on the shared folder scan: skips with warnings naming
the files, captions, labels, seeded starts with the sound aligned, evaluation crops, the scan cache."""

import logging

import pytest
import torch

from mmdiff.modalities.av.folder import AudioVideoFolder
from mmdiff.modalities.av.io import write_av
from mmdiff.modalities.video.io import write_mp4

SR, FPS, SIDE = 16000, 8.0, 16
CLICKS = (0.5, 1.25, 2.0, 2.5)  # seconds: a tone burst starts at each, and the frames toggle dark/bright there


def _clip(seconds, clicks=CLICKS):
    """``(video (3, F, 16, 16), audio (1, S))``: 30 ms bursts at ``clicks``, the frame level toggling at each."""
    frames, n = round(seconds * FPS), round(seconds * SR)
    audio, level = torch.zeros(1, n), torch.full((frames,), 0.1)
    t = torch.arange(round(0.03 * SR)) / SR
    for k, at in enumerate(c for c in clicks if c < seconds):
        audio[0, round(at * SR) : round(at * SR) + len(t)] = 0.5 * torch.sin(2 * torch.pi * 1000 * t)
        level[round(at * FPS) :] = 0.9 if k % 2 == 0 else 0.1
    return level.view(1, frames, 1, 1).expand(3, frames, SIDE, SIDE).clone(), audio


@pytest.fixture()
def folder(tmp_path):
    """clips/: a.mp4 (3 s, captioned by metadata.csv), b.mp4 (3 s, sidecar b.txt), short.mp4 (0.5 s), silent.mp4 (no
    audio track), broken.mp4 (not a video)."""
    root = tmp_path / "clips"
    write_av(root / "a.mp4", *_interleave(_clip(3.0)), SR)
    write_av(root / "b.mp4", *_interleave(_clip(3.0, clicks=(0.75, 1.5))), SR)
    write_av(root / "short.mp4", *_interleave(_clip(0.5, clicks=(0.25,))), SR)
    write_mp4(root / "silent.mp4", _clip(3.0)[0], FPS)
    (root / "broken.mp4").write_bytes(b"not a video at all" * 10)
    (root / "metadata.csv").write_text("file_name,caption\na.mp4,four beeps\n", encoding="utf-8")
    (root / "b.txt").write_text("two beeps\n", encoding="utf-8")
    return root


def _interleave(pair):
    video, audio = pair
    return video, FPS, audio


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "mmdiff.data" and r.levelname == "WARNING"]


def test_files_without_sound_and_unreadable_files_are_skipped_with_warnings_naming_them(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="mmdiff.data"):
        data = AudioVideoFolder(folder, num_frames=8, fps=FPS, size=(SIDE, SIDE), sample_rate=SR, scan_cache=False)
    assert [v.path.name for v in data.videos] == ["a.mp4", "b.mp4", "short.mp4"]
    lines = _warnings(caplog)
    assert any("AudioVideoFolder" in line and "silent.mp4" in line and "no audio track" in line for line in lines)
    assert any("broken.mp4" in line for line in lines) and len(lines) == 2
    summary = data.summary()
    assert "3 files used" in summary and "2 skipped" in summary and "1 no audio track" in summary
    assert "aac 16000 Hz (3)" in summary and "2 captioned" in summary
    assert data.captions == ["four beeps", "two beeps", ""]
    item = data[0]
    assert set(item) == {"video", "audio", "caption"} and item["caption"] == "four beeps"
    assert item["video"].shape == (3, 8, SIDE, SIDE) and item["audio"].shape == (1, SR)


def test_silent_policy_uses_them_with_zeros_and_short_skip_leaves_short_files_out(folder, caplog):
    data = AudioVideoFolder(folder, num_frames=8, size=(SIDE, SIDE), channels=2, no_audio="silent", scan_cache=False)
    names = [v.path.name for v in data.videos]
    assert names == ["a.mp4", "b.mp4", "short.mp4", "silent.mp4"]
    silent = data[names.index("silent.mp4"), 3]
    assert torch.equal(silent["audio"], torch.zeros(2, SR)) and silent["video"].std() > 0.1  # the video is read
    assert "1 silent (no audio track)" in data.summary()
    short = data[names.index("short.mp4")]  # "pad": the last frame repeats, the sound goes silent
    assert short["audio"].shape == (2, SR) and short["audio"][:, round(0.6 * SR) :].abs().max() < 1e-3
    skip = AudioVideoFolder(folder, num_frames=8, size=(SIDE, SIDE), short_policy="skip", scan_cache=False)
    assert [v.path.name for v in skip.videos] == ["a.mp4", "b.mp4"]
    assert "shorter than a clip" in skip.summary()


def _onsets(audio, threshold=0.05):
    loud = (audio.abs() > threshold).nonzero().flatten().tolist()
    onsets, last = [], -(10**9)
    for i in loud:
        if i - last > 0.05 * SR:
            onsets.append(i / SR)
        last = i
    return onsets


def test_seeded_items_are_deterministic_and_their_sound_lines_up_with_their_frames(folder):
    data = AudioVideoFolder(folder, num_frames=8, fps=FPS, size=(SIDE, SIDE), sample_rate=SR, scan_cache=False)
    one, again, other = data[0, 11], data[0, 11], data[0, 12]
    assert torch.equal(one["video"], again["video"]) and torch.equal(one["audio"], again["audio"])
    assert not torch.equal(one["audio"], other["audio"])
    for seed in range(6):
        start = data._clip_start(data.videos[0], torch.Generator().manual_seed(seed))
        item = data[0, seed]
        expected = [c - start for c in CLICKS if 0 <= c - start < 0.995]  # bursts starting in the 1 s clip
        assert _onsets(item["audio"][0]) == pytest.approx(expected, abs=0.002)
        level = item["video"].mean(dim=(0, 2, 3))  # (8,)
        changes = [k / FPS for k in range(1, 8) if abs(float(level[k] - level[k - 1])) > 0.4]
        # frame k shows time start + k / 8: the frame change comes at the first frame at or after each burst
        frames = [-(-(c * FPS) // 1) for c in expected if c > 0.001]  # ceil: the first frame at or after the burst
        assert changes == pytest.approx([k / FPS for k in frames if k < 8], abs=1e-6)
    assert data.item_key(0, 11) == data.item_key(0, 11) != data.item_key(0, 12)
    assert data.item_key(0) is None  # without a seed the start comes from the global RNG: no fixed clip
    assert '"AudioVideoFolder"' in data.item_key(0, 11)
    mono_key = data.item_key(0, 11)
    stereo = AudioVideoFolder(folder, num_frames=8, fps=FPS, size=(SIDE, SIDE), channels=2, scan_cache=False)
    assert stereo.item_key(0, 11) != mono_key  # the audio settings are part of the key


def test_evaluation_crops_labels_and_the_scan_cache(tmp_path):
    for name in ("beeps/a.mp4", "beeps/b.mp4", "quiet/c.mp4"):
        write_av(tmp_path / name, *_interleave(_clip(2.0)), SR)
    data = AudioVideoFolder(tmp_path, num_frames=8, fps=FPS, size=(SIDE, SIDE), labels="subfolder")
    assert data.class_names == ["beeps", "quiet"] and data.num_classes == 2
    assert [int(data[i]["label"]) for i in range(3)] == [0, 0, 1]
    assert data.num_crops(0) == 2
    first, second = data.crops(0, [0, 1])  # [0, 1) s and [1, 2) s
    assert _onsets(first["audio"][0]) == pytest.approx([0.5], abs=0.002)
    assert _onsets(second["audio"][0]) == pytest.approx([0.25], abs=0.002)  # the burst at 1.25 s
    assert data.scan_report.probed == 3
    again = AudioVideoFolder(tmp_path, num_frames=8, fps=FPS, size=(SIDE, SIDE), labels="subfolder")
    assert again.scan_report.cached == 3 and again.scan_report.probed == 0
    assert torch.equal(again.crops(0, [1])[0]["audio"], second["audio"])


def test_bad_settings_and_an_empty_folder_give_clear_errors(tmp_path, folder):
    with pytest.raises(ValueError, match="AudioVideoFolder: no_audio must be one of"):
        AudioVideoFolder(folder, no_audio="drop")
    with pytest.raises(ValueError, match="AudioVideoFolder: channels"):
        AudioVideoFolder(folder, channels=6)
    with pytest.raises(ValueError, match="AudioVideoFolder: short_policy"):
        AudioVideoFolder(folder, short_policy="wrap")
    with pytest.raises(ValueError, match="AudioVideoFolder: sample_rate"):
        AudioVideoFolder(folder, sample_rate=0)
    only_silent = tmp_path / "silent_only"
    write_mp4(only_silent / "x.mp4", _clip(1.0)[0], FPS)
    with pytest.raises(ValueError, match="no usable video with sound under .*x.mp4: no audio track"):
        AudioVideoFolder(only_silent, scan_cache=False)
