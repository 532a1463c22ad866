"""mp4 with sound: write_av / read_av round trips, alignment by timestamps (AAC priming, late audio), files without
sound, and the frames-above-spectrogram preview."""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from mmdiff.modalities.audio.io import AudioDecodeError
from mmdiff.modalities.av.io import NoAudioTrack, has_audio, read_av, stream_starts, write_av, write_av_preview
from mmdiff.modalities.video.io import write_mp4

SR, FPS, F, SIDE = 16000, 8.0, 16, 16  # 2 s clips of 16x16 frames
CLICKS = (0.25, 1.0, 1.5)  # seconds: a tone burst starts at each, and the frame turns from dark to bright (or back)


def _clip(clicks=CLICKS, channels=1, frames=F):
    """``(video (3, F, 16, 16), audio (channels, S))``: 40 ms bursts of 1 kHz at ``clicks``; the frames toggle
    between dark and bright at each click (clicks fall on frame boundaries)."""
    n = round(frames / FPS * SR)
    audio = torch.zeros(channels, n)
    t = torch.arange(round(0.04 * SR)) / SR
    burst = 0.6 * torch.sin(2 * torch.pi * 1000 * t) * torch.hann_window(len(t), periodic=False).sqrt()
    level = torch.zeros(frames)
    for k, at in enumerate(clicks):
        audio[:, round(at * SR) : round(at * SR) + len(t)] = burst
        level[round(at * FPS) :] = 0.8 if k % 2 == 0 else 0.2
    video = level.view(1, frames, 1, 1).expand(3, frames, SIDE, SIDE).clone() + 0.1  # (3, F, H, W)
    video[0, :, :4] = 0.9  # a red band, so colours are checked too
    return video.clamp(0, 1), audio


def _onsets(audio, threshold=0.05):
    """Seconds at which ``audio`` (S,) rises above ``threshold`` after at least 50 ms below it."""
    loud = (audio.abs() > threshold).nonzero().flatten().tolist()
    onsets, last = [], -(10**9)
    for i in loud:
        if i - last > 0.05 * SR:
            onsets.append(i / SR)
        last = i
    return onsets


def _changes(video):
    """Seconds of the frames whose mean brightness jumps by more than 0.2 from the frame before."""
    level = video[1:].mean(dim=(0, 2, 3))  # green and blue: no red band
    return [k / FPS for k in range(1, len(level)) if abs(float(level[k] - level[k - 1])) > 0.2]


def _envelope(audio, hop=320):
    """RMS per 20 ms (S,) -> (S // hop,)."""
    n = audio.shape[-1] // hop * hop
    return audio[..., :n].reshape(-1, hop).pow(2).mean(-1).sqrt()


@pytest.mark.parametrize("codec", ["aac", "opus"])
def test_round_trip_keeps_frames_and_puts_each_sound_at_its_frame(tmp_path, codec):
    video, audio = _clip()
    path = write_av(tmp_path / f"clip_{codec}.mp4", video, FPS, audio, SR, audio_codec=codec)
    out = read_av(path, F, FPS, (SIDE, SIDE), SR, channels=1)
    assert out["video"].shape == (3, F, SIDE, SIDE) and out["video"].dtype == torch.float32
    assert out["audio"].shape == (1, 2 * SR) and out["audio"].dtype == torch.float32
    assert (out["video"] - video).abs().mean() < 0.03  # H.264 at CRF 18
    onsets = _onsets(out["audio"][0])
    assert len(onsets) == len(CLICKS)
    for got, want in zip(onsets, CLICKS):
        assert abs(got - want) < 0.002  # within 2 ms: no priming delay
    assert _changes(out["video"]) == list(CLICKS)  # the frame changes where the sound starts
    a, b = _envelope(audio[0]), _envelope(out["audio"][0])
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.98
    assert abs(float(b.sum() / a.sum()) - 1) < 0.1


def test_streams_start_at_zero_and_last_as_long_as_the_clip(tmp_path):
    """As a player sees the file: both streams start at 0, the audio's first decoded sample has timestamp 0 (the
    AAC encoder's 1024 priming samples are cut by the edit list) and both last the clip's 2 s (AAC to a frame)."""
    video, audio = _clip()
    path = write_av(tmp_path / "clip.mp4", video, FPS, audio, SR)
    assert stream_starts(path) == (0.0, 0.0)
    with av.open(str(path)) as container:
        vs, aus = container.streams.video[0], container.streams.audio[0]
        assert (vs.codec_context.name, aus.codec_context.name, aus.rate) == ("h264", "aac", SR)
        assert vs.frames == F and float(vs.duration * vs.time_base) == pytest.approx(2.0)
        assert abs(float(aus.duration * aus.time_base) - 2.0) <= 1024 / SR
        first = next(container.decode(aus))
        assert first.pts == 0


def test_stereo_keeps_each_channel_and_mono_mixes_down(tmp_path):
    video, _ = _clip()
    _, left = _clip(clicks=(0.25,))
    _, right = _clip(clicks=(1.0,))
    audio = torch.cat([left, right])  # (2, S): a click on the left at 0.25 s, on the right at 1.0 s
    path = write_av(tmp_path / "stereo.mp4", video, FPS, audio, SR)
    out = read_av(path, F, FPS, (SIDE, SIDE), SR, channels=2)["audio"]
    assert out.shape == (2, 2 * SR)
    assert _onsets(out[0]) == pytest.approx([0.25], abs=0.002) and _onsets(out[1]) == pytest.approx([1.0], abs=0.002)
    mono = read_av(path, F, FPS, (SIDE, SIDE), SR, channels=1)["audio"]
    assert torch.allclose(mono[0], out.mean(0), atol=1e-5)


def test_a_span_from_a_later_start_is_aligned_and_resampled(tmp_path):
    video, audio = _clip()
    path = write_av(tmp_path / "clip.mp4", video, FPS, audio, SR)
    out = read_av(path, 8, FPS, (SIDE, SIDE), 22050, channels=1, start=0.75)  # 1 s from 0.75 s, at 22.05 kHz
    assert out["audio"].shape == (1, 22050)
    seconds = [t * SR / 22050 for t in _onsets(out["audio"][0].float())]  # _onsets counts at SR
    assert seconds == pytest.approx([0.25, 0.75], abs=0.002)  # the bursts at 1.0 and 1.5 s, in the span's time
    assert _changes(out["video"]) == [0.25, 0.75]
    whole = read_av(path, F, FPS, (SIDE, SIDE), SR)["video"]
    assert torch.equal(out["video"], whole[:, 6:14])  # frames 6..13: the same span


def _late_audio_file(path, delay):
    """An mp4 whose audio stream starts ``delay`` seconds after the video (a burst at 1.0 s of the timeline and a
    frame change there), muxed with PyAV directly: write_av always starts both at 0."""
    video, audio = _clip(clicks=(1.0,))
    frames = (video * 255).round().byte().permute(1, 2, 3, 0).numpy()  # (F, H, W, 3)
    late = audio[:, round(delay * SR) :].numpy()  # the sound from `delay` on: its burst still plays at 1.0 s
    with av.open(str(path), "w") as container:
        vs = container.add_stream("libx264", rate=Fraction(8))
        vs.width, vs.height, vs.pix_fmt = SIDE, SIDE, "yuv420p"
        aus = container.add_stream("aac", rate=SR, layout="mono")
        chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(late), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts, chunk.time_base = SR, round(delay * SR), Fraction(1, SR)
        for packet in aus.encode(chunk):
            container.mux(packet)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 8)
            for packet in vs.encode(frame):
                container.mux(packet)
        for stream in (vs, aus):
            for packet in stream.encode(None):
                container.mux(packet)
    return path


def test_audio_that_starts_late_is_placed_by_its_timestamps(tmp_path):
    path = _late_audio_file(tmp_path / "late.mp4", delay=0.5)
    video_start, audio_start = stream_starts(path)
    assert audio_start - video_start > 0.4  # the file says so (less the AAC priming the edit list keeps)
    out = read_av(path, F, FPS, (SIDE, SIDE), SR)
    assert _onsets(out["audio"][0]) == pytest.approx([1.0], abs=0.002)  # not at 0.5 s, where counting samples puts it
    assert _changes(out["video"]) == [1.0]
    assert out["audio"][0, : int(0.4 * SR)].abs().max() < 1e-3  # silence before the audio starts
    tail = read_av(path, 4, FPS, (SIDE, SIDE), SR, start=0.75)["audio"][0]  # starts after the audio does
    assert _onsets(tail) == pytest.approx([0.25], abs=0.002)


def test_a_file_without_sound_raises_naming_it_or_reads_silent(tmp_path):
    video, _ = _clip()
    path = write_mp4(tmp_path / "silent.mp4", video, FPS)
    assert not has_audio(path) and has_audio(write_av(tmp_path / "loud.mp4", video, FPS, _clip()[1], SR))
    with pytest.raises(NoAudioTrack, match="silent.mp4.*no audio track") as error:
        read_av(path, F, FPS, (SIDE, SIDE), SR)
    assert isinstance(error.value, ValueError) and error.value.path == path
    out = read_av(path, 4, FPS, (SIDE, SIDE), SR, channels=2, missing_audio="silent")
    assert out["video"].shape == (3, 4, SIDE, SIDE) and torch.equal(out["audio"], torch.zeros(2, SR // 2))
    with pytest.raises(AudioDecodeError, match="nothing.mp4"):
        has_audio(tmp_path / "nothing.mp4")


def test_short_policies_pad_with_silence_loop_both_tracks_or_raise(tmp_path):
    video, audio = _clip(clicks=(0.25,), frames=8)  # 1 s file, a burst at 0.25 s
    path = write_av(tmp_path / "short.mp4", video, FPS, audio, SR)
    padded = read_av(path, F, FPS, (SIDE, SIDE), SR, short_policy="pad")
    assert padded["audio"].shape == (1, 2 * SR) and _onsets(padded["audio"][0]) == pytest.approx([0.25], abs=0.002)
    assert padded["audio"][0, round(1.1 * SR) :].abs().max() < 1e-3  # silent after the sound ends
    looped = read_av(path, F, FPS, (SIDE, SIDE), SR, short_policy="loop")
    assert _onsets(looped["audio"][0]) == pytest.approx([0.25, 1.25], abs=0.002)
    assert _changes(looped["video"]) == [0.25, 1.0, 1.25]  # bright from 0.25 s, dark again as the video restarts
    with pytest.raises(ValueError, match="short.mp4.*past the video's end"):
        read_av(path, F, FPS, (SIDE, SIDE), SR, short_policy="skip")


def test_bad_arguments_give_one_line_errors(tmp_path):
    video, audio = _clip()
    with pytest.raises(ValueError, match="audio must have shape"):
        write_av(tmp_path / "a.mp4", video, FPS, audio[0], SR)
    with pytest.raises(ValueError, match="audio must have shape.*1 or 2 channels"):
        write_av(tmp_path / "a.mp4", video, FPS, audio.expand(3, -1), SR)
    with pytest.raises(ValueError, match="float frames must have shape"):
        write_av(tmp_path / "a.mp4", video[0], FPS, audio, SR)
    with pytest.raises(ValueError, match="audio_codec must be one of"):
        write_av(tmp_path / "a.mp4", video, FPS, audio, SR, audio_codec="mp3")
    with pytest.raises(ValueError, match="sample_rate"):
        write_av(tmp_path / "a.mp4", video, FPS, audio, 0)
    path = write_av(tmp_path / "ok.mp4", video, FPS, audio, SR)
    with pytest.raises(ValueError, match="missing_audio"):
        read_av(path, F, FPS, None, SR, missing_audio="zeros")
    with pytest.raises(ValueError, match="channels"):
        read_av(path, F, FPS, None, SR, channels=3)
    with pytest.raises(ValueError, match="start"):
        read_av(path, F, FPS, None, SR, start=-1.0)


def test_preview_puts_frames_above_a_time_aligned_spectrogram(tmp_path):
    video = torch.zeros(3, F, SIDE, SIDE)
    video[:, 4] = 1.0  # one white frame, shown over [0.5, 0.625) s
    _, audio = _clip(clicks=(0.5,))  # a 40 ms burst from 0.5 s
    path = write_av_preview(tmp_path / "preview.png", [{"video": video, "audio": audio}], FPS, SR, captions=["c"])
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)  # (height, width, 3)
    height, width = image.shape[:2]
    assert width >= F * 64 and 150 < height < 400  # every 1/8 s frame slot at least 64 px wide
    black = image.sum(-1) == 0
    rows = np.flatnonzero(black.sum(1) > 0.3 * width)  # the frame strip: mostly black frames
    assert 64 <= len(rows) <= 70 and rows[-1] < height / 2  # frames enlarged to 64 px, above the spectrogram
    cols = np.flatnonzero(black[rows[len(rows) // 2]])
    x0, x1 = cols[0], cols[-1] + 1  # the strip's time axis: 0 s .. 2 s
    middle = image[rows[len(rows) // 2]]
    white = np.flatnonzero((middle == 255).all(-1)[x0:x1]) + x0  # the white frame's columns
    assert (white.min() - x0) / (x1 - x0) * 2 == pytest.approx(0.5, abs=0.01)
    assert (white.max() + 1 - x0) / (x1 - x0) * 2 == pytest.approx(0.625, abs=0.01)
    spectrogram = image[rows[-1] + 3 : rows[-1] + 100, x0:x1].sum(-1)  # below the strip, inside the time axis
    loudest = spectrogram.sum(0).argmax() + x0  # the burst's brightest column
    assert white.min() <= loudest <= white.max()  # under the frame it belongs to
    with pytest.raises(ValueError, match="captions"):
        write_av_preview(tmp_path / "p.png", [(video, audio)], FPS, SR, captions=["one", "two"])
