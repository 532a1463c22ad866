"""Video I/O and the video folder dataset: every common container, timestamp sampling, writers, bad files, labels.

Test videos are generated at test time with PyAV (and Pillow for GIF), so the suite needs no stored media. Frame ``i``
of every generated video has a uniform grey top half of level ``10 * i`` (a white square moves along the bottom so
that frames also differ in content): reading the top rows of a decoded frame tells which source frame it was.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from mmdiff.modalities.video import io as video_io
from mmdiff.modalities.video.folder import VIDEO_EXTENSIONS, VideoFolder
from mmdiff.modalities.video.io import (
    VideoDecodeError,
    read_clip,
    video_info,
    write_frame_grid,
    write_gif,
    write_mp4,
)

FPS, N, W, H = 12, 24, 48, 36  # the source videos: 2 s of 48x36 at 12 fps
GIF_MS = 80  # GIF stores centiseconds: 1000 / 12 ms is written as 80 ms (12.5 fps)


def has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # av.codec.codec.UnknownCodecError
        return False
    return True


VP9 = next((name for name in ("libvpx-vp9", "vp9") if has_encoder(name)), None)


def frame_image(i: int, width: int = W, height: int = H) -> np.ndarray:
    """uint8 (H, W, 3): top half grey ``10 * i`` (the frame index), a white 6x6 square moving along the bottom."""
    image = np.full((height, width, 3), 10 * i, np.uint8)
    x = (3 * i) % max(1, width - 6)
    image[height - 8 : height - 2, x : x + 6] = 255
    return image


def encode(path: Path, codec: str, n: int = N, width: int = W, height: int = H, pix_fmt: str = "yuv420p", **kw) -> Path:
    """``n`` frames of :func:`frame_image` with a PyAV encoder; ``pts_ms`` gives irregular timestamps (VFR)."""
    pts_ms = kw.pop("pts_ms", None)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=None if pts_ms else FPS, options=kw.pop("options", {}))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.gop_size = 6  # keyframes every 0.5 s: clips starting later exercise the seek
        if pts_ms:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_image(i, width, height), format="rgb24")
            if pts_ms:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def encode_gif(path: Path, n: int = N) -> Path:
    images = [Image.fromarray(frame_image(i)) for i in range(n)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=GIF_MS, loop=0)
    return path


def encode_audio_only(path: Path) -> Path:
    """0.2 s of AAC sine in ``path`` (an .mp4 or .m4a with no video stream)."""
    samples = (0.3 * np.sin(np.arange(8820) * 2 * np.pi * 440 / 44100)).astype(np.float32)[None]
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
    frame.sample_rate, frame.pts = 44100, 0
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100, layout="mono")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def indices(clip: torch.Tensor) -> list[int]:
    """Source frame index of each frame of a ``(3, F, H, W)`` clip, from the grey level of its top rows."""
    level = clip[:, :, : max(1, clip.shape[2] // 5)].mean(dim=(0, 2, 3)) * 255 / 10  # (F,)
    return [round(float(v)) for v in level]


def latest_at_or_before(times: list[float], targets: list[float]) -> list[int]:
    """The reference answer: for each target, the last source frame whose time is <= it."""
    return [max(i for i, t in enumerate(times) if t <= target + 1e-9) for target in targets]


# -------------------------------------------------------------------------------------------------------- sources

SOURCES = ["mp4", "mkv", "webm", "avi", "gif", "odd"]
VFR_MS = [0, 50, 300, 350, 900, 1000, 1500, 1510, 1520, 2000, 2600, 2700]  # irregular frame times (ms)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """One small video per container/codec, made once for the module."""
    root = tmp_path_factory.mktemp("videos")
    made = {
        "mp4": encode(root / "a.mp4", "libx264"),
        "mkv": encode(root / "a.mkv", "libx264"),
        "avi": encode(root / "a.avi", "mjpeg", pix_fmt="yuvj420p"),
        "gif": encode_gif(root / "a.gif"),
        "odd": encode(root / "odd.mp4", "libx264", width=33, height=25, pix_fmt="yuv444p"),  # 4:4:4 allows odd sizes
        "vfr": encode(root / "vfr.mp4", "libx264", n=len(VFR_MS), pts_ms=VFR_MS),
        "short": encode(root / "short.mp4", "libx264", n=4),  # 4 frames: 1/3 s
    }
    if VP9:
        made["webm"] = encode(root / "a.webm", VP9, options={"deadline": "realtime", "cpu-used": "8"})
    return made


def source(videos: dict[str, Path], name: str) -> Path:
    if name not in videos:
        pytest.skip(f"this FFmpeg build has no VP9 encoder for the {name} test video")
    return videos[name]


def frame_times(name: str) -> list[float]:
    return [i * GIF_MS / 1000 for i in range(N)] if name == "gif" else [i / FPS for i in range(N)]


# -------------------------------------------------------------------------------------------------------- reading


@pytest.mark.parametrize("name", SOURCES)
def test_read_clip_shape_range_and_size_for_every_container(videos, name):
    clip = read_clip(source(videos, name), num_frames=5, fps=6, size=(20, 30), start=0.0)
    assert clip.shape == (3, 5, 20, 30) and clip.dtype == torch.float32
    assert 0.0 <= float(clip.min()) and float(clip.max()) <= 1.0
    odd = read_clip(source(videos, name), num_frames=2, fps=6, size=(17, 9), start=0.0)  # odd target, other aspect
    assert odd.shape == (3, 2, 17, 9)


@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize(("start", "fps", "frames"), [(1.05, 5.0, 4), (1 / 6, 3.0, 4), (0.0, 24.0, 8)])
def test_timestamp_sampling_takes_the_latest_frame_at_or_before_each_target(videos, name, start, fps, frames):
    """Lower and higher target rates, a start after a keyframe (seek), and targets on exact frame times."""
    clip = read_clip(source(videos, name), num_frames=frames, fps=fps, size=(16, 16), start=start)
    targets = [start + k / fps for k in range(frames)]
    assert indices(clip) == latest_at_or_before(frame_times(name), targets)


@pytest.mark.parametrize("seek", ["fails", "overshoots"])
def test_clip_is_right_when_the_seek_fails_or_lands_after_the_start(videos, monkeypatch, seek):
    """Containers that cannot seek, or seek past the clip start, are decoded from the beginning instead."""

    def bad_seek(container, stream, seconds):
        if seek == "fails":
            return False
        container.seek(int((seconds + 0.6) / stream.time_base), stream=stream, backward=True, any_frame=False)
        return True

    monkeypatch.setattr(video_io, "_seek", bad_seek)
    clip = read_clip(videos["mp4"], num_frames=4, fps=5.0, size=(16, 16), start=1.05)
    assert indices(clip) == latest_at_or_before(frame_times("mp4"), [1.05 + k / 5 for k in range(4)])


def test_video_info_reads_headers(videos):
    info = video_info(videos["mp4"])
    assert info["fps"] == FPS and info["frames"] == N and info["frames_exact"]
    assert (info["width"], info["height"], info["codec"]) == (W, H, "h264")
    assert info["duration"] == pytest.approx(N / FPS, abs=1e-3)
    mkv = video_info(videos["mkv"])  # Matroska stores no frame count: estimated from the duration, flagged
    assert mkv["frames"] == N and not mkv["frames_exact"] and mkv["duration"] == pytest.approx(2.0, abs=1e-3)
    counted = video_info(videos["mkv"], count_frames=True)
    assert counted["frames"] == N and counted["frames_exact"]
    odd = video_info(videos["odd"])
    assert (odd["width"], odd["height"]) == (33, 25)


def test_variable_frame_rate_is_sampled_by_timestamp(videos):
    clip = read_clip(videos["vfr"], num_frames=20, fps=10, size=(12, 16), start=0.0)
    targets = [k / 10 for k in range(20)]
    assert indices(clip) == latest_at_or_before([t / 1000 for t in VFR_MS], targets)


def test_random_start_is_deterministic_per_seed_and_inside_the_video(videos):
    def clip(seed):
        return read_clip(videos["mp4"], 6, 6.0, (12, 12), generator=torch.Generator().manual_seed(seed))

    assert torch.equal(clip(3), clip(3))
    firsts = set()
    for seed in range(6):
        picked = indices(clip(seed))
        assert picked == [picked[0] + 2 * k for k in range(6)] and picked[-1] < N  # 6 fps from 12: every 2nd frame
        firsts.add(picked[0])
    assert len(firsts) > 1  # the start does vary with the seed


def test_short_videos_loop_pad_or_raise(videos):
    loop = read_clip(videos["short"], 8, FPS, (12, 12), short_policy="loop")
    assert indices(loop) == [0, 1, 2, 3, 0, 1, 2, 3]
    pad = read_clip(videos["short"], 8, FPS, (12, 12), short_policy="pad")
    assert indices(pad) == [0, 1, 2, 3, 3, 3, 3, 3]
    with pytest.raises(ValueError, match="short_policy='skip'"):
        read_clip(videos["short"], 8, FPS, (12, 12), short_policy="skip")
    assert indices(read_clip(videos["short"], 4, FPS, (12, 12), short_policy="skip")) == [0, 1, 2, 3]  # fits


def test_bad_files_raise_video_decode_error_naming_file_and_reason(tmp_path):
    text = tmp_path / "x.mp4"
    text.write_text("not a video")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    audio = encode_audio_only(tmp_path / "audio.mp4")
    for path, reason in [(text, "FFmpeg could not open"), (empty, "empty"), (audio, "no video stream")]:
        with pytest.raises(VideoDecodeError, match=reason) as info:
            read_clip(path, 4, 8.0, (8, 8))
        assert info.value.path == path and str(path) in str(info.value)
    with pytest.raises(ValueError, match="short_policy"):
        read_clip(text, 4, 8.0, short_policy="wrap")


# -------------------------------------------------------------------------------------------------------- writing


def smooth_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """(3, F, H, W) in [0, 1]: gradients that H.264 keeps almost exactly, brighter with each frame."""
    y = torch.linspace(0, 1, height)[:, None].expand(height, width)
    x = torch.linspace(0, 1, width)[None, :].expand(height, width)
    t = torch.arange(frames)[:, None, None] / frames
    return torch.stack([0.2 + 0.6 * y + 0 * t, 0.2 + 0.6 * x + 0 * t, 0.1 + 0.5 * t + 0 * x])


@pytest.mark.parametrize("fps", [12.0, 30000 / 1001, 7.5])
def test_write_mp4_keeps_frame_count_fps_and_size(tmp_path, fps):
    clip = smooth_clip(10, 24, 32)
    path = write_mp4(tmp_path / "deep" / "out.mp4", clip, fps)
    info = video_info(path, count_frames=True)
    assert info["frames"] == 10 and (info["width"], info["height"]) == (32, 24)
    assert info["fps"] == pytest.approx(fps, rel=1e-9)
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == Fraction(fps).limit_denominator(1001)
    back = read_clip(path, 10, fps, None, start=0.0)  # (3, 10, 24, 32)
    assert back.shape == clip.shape and float((back - clip).abs().mean()) < 0.02


def test_write_mp4_pads_odd_sizes_by_repeating_the_edge(tmp_path):
    clip = smooth_clip(5, 25, 33)
    info = video_info(write_mp4(tmp_path / "odd.mp4", clip, 12))
    assert (info["width"], info["height"]) == (34, 26)  # padded to even, not rescaled
    back = read_clip(tmp_path / "odd.mp4", 5, 12, None, start=0.0)  # (3, 5, 26, 34)
    assert float((back[:, :, :25, :33] - clip).abs().mean()) < 0.02
    assert float((back[:, :, 25] - back[:, :, 24]).abs().mean()) < 0.02  # the padded row repeats the last one
    assert float((back[..., 33] - back[..., 32]).abs().mean()) < 0.02
    uint8 = torch.from_numpy(np.stack([frame_image(i) for i in range(4)]))  # (F, H, W, 3) uint8 also accepted
    assert indices(read_clip(write_mp4(tmp_path / "u8.mp4", uint8, 12), 4, 12, start=0.0)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="fps"):
        write_mp4(tmp_path / "bad.mp4", clip, 0)


def test_write_gif_and_frame_grid(tmp_path):
    clip = smooth_clip(6, 20, 30)
    gif = write_gif(tmp_path / "g" / "clip.gif", clip, 10)
    with Image.open(gif) as image:
        assert image.n_frames == 6 and image.size == (30, 20) and image.info["duration"] == 100
    grid = write_frame_grid(tmp_path / "grid.png", [clip, smooth_clip(12, 20, 30)], max_frames=4)
    with Image.open(grid) as image:
        assert image.format == "PNG" and image.size == (2 + 4 * (30 + 2), 2 + 2 * (20 + 2))
        assert image.getpixel((0, 0)) == (255, 255, 255)  # the white gap framing the cells


# --------------------------------------------------------------------------------------------------------- folder


def _skip_lines(caplog) -> list[str]:
    """The warnings the folder scan logged on ``mmdiff.data``, one line each."""
    return [r.getMessage() for r in caplog.records if r.name == "mmdiff.data" and r.levelname == "WARNING"]


def test_video_folder_skips_bad_files_with_logged_warnings_and_finds_nested_upper_case(tmp_path, videos, caplog):
    (tmp_path / "Sub" / "Deep").mkdir(parents=True)
    (tmp_path / "Sub" / "Deep" / "CLIP.MP4").write_bytes(videos["mp4"].read_bytes())
    (tmp_path / "Sub" / "other.AVI").write_bytes(videos["avi"].read_bytes())
    (tmp_path / "x.mp4").write_text("this is text")
    (tmp_path / "empty.mp4").touch()
    encode_audio_only(tmp_path / "voice.m4v")
    (tmp_path / "notes.txt").write_text("not a video extension: never looked at")
    folder = VideoFolder(tmp_path, num_frames=4, fps=4.0, size=(16, 16))
    lines = _skip_lines(caplog)
    assert len(lines) == 3 and all("\n" not in line and line.startswith("VideoFolder: skipping ") for line in lines)
    for name, reason in [("x.mp4", "could not open"), ("empty.mp4", "empty"), ("voice.m4v", "no video stream")]:
        assert any(name in line and reason in line for line in lines), (name, lines)
    assert len(folder) == 2 and len(folder.skipped) == 3 and folder.num_classes == 0
    item = folder[(0, 7)]
    assert set(item) == {"video", "caption"} and item["video"].shape == (3, 4, 16, 16)
    assert torch.equal(item["video"], folder[(0, 7)]["video"])  # the seed fixes the start
    summary = folder.summary()
    assert "2 files used, 3 skipped" in summary and "48x36 (2)" in summary and "fps 12 (2)" in summary


def test_video_folder_labels_short_policy_and_errors(tmp_path, videos, caplog):
    for label, name in [("cat", "mp4"), ("cat", "mkv"), ("dog", "avi"), ("dog", "short")]:
        (tmp_path / label).mkdir(exist_ok=True)
        (tmp_path / label / videos[name].name).write_bytes(videos[name].read_bytes())
    folder = VideoFolder(tmp_path, num_frames=4, fps=4.0, size=(8, 8), labels="subfolder")
    assert folder.class_names == ["cat", "dog"] and folder.num_classes == 2 and len(folder) == 4
    labels = [int(folder[i]["label"]) for i in range(len(folder))]
    assert labels == [0, 0, 1, 1] and folder[0]["label"].dtype == torch.int64 and folder[0]["label"].ndim == 0
    skipping = VideoFolder(tmp_path, num_frames=4, fps=4.0, size=(8, 8), short_policy="skip")
    assert _skip_lines(caplog) == []  # too-short files are left out quietly: they are not broken
    assert len(skipping) == 3 and "short.mp4" in str(skipping.skipped[0][0])
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "x.mkv").write_text("text")
    with pytest.raises(ValueError, match="no usable video") as info:
        VideoFolder(empty)
    assert len(_skip_lines(caplog)) == 1 and "x.mkv" in _skip_lines(caplog)[0]
    assert str(empty) in str(info.value) and "1 file(s)" in str(info.value) and ".mp4" in str(info.value)
    with pytest.raises(ValueError, match="short_policy"):
        VideoFolder(tmp_path, short_policy="wrap")
    assert ".webm" in VIDEO_EXTENSIONS
