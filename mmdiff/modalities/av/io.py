"""Audio-video files through PyAV (FFmpeg): mp4 with sound, reading a clip's frames and the audio of the same span,
and a preview PNG with the frames above the spectrogram on one time axis.

Why presentation timestamps: a player shows the video frame and plays the audio sample whose timestamps say "now";
the streams of a file need not start together (a camera that starts recording sound late, an edit that cut the video
first), so the audio of the span ``[start, start + num_frames / fps)`` of the video is found by timestamp: video time
``t`` (seconds from the first frame, as :func:`~mmdiff.modalities.video.io.read_clip` counts it) is audio time
``t + video_start - audio_start`` (seconds from the first decoded sample, as
:func:`~mmdiff.modalities.audio.io.load_audio` counts it), each stream's start being its ``start_time``.

AAC's encoder delay ("priming", 1024 samples: 64 ms at 16 kHz) is the classic source of out-of-sync mp4 files.
FFmpeg's mp4 muxer writes it as an edit list and the first packet's negative timestamp, and its demuxer and decoder
drop those samples again, so decoded audio starts at timestamp 0 with the first real sample; :func:`write_av` relies on
that (the frames and the first audio sample both have timestamp 0) and the tests check it by reading a click back at
the time of a frame change. Opus' pre-skip (312 samples at 48 kHz) is handled the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torchaudio.functional as AF
from torch import Tensor

from ..audio.io import AudioDecodeError, load_audio
from ..containers import open_container
from ..video.io import _CRF, _MP4_ENCODER, _checked, _pad_even, read_clip, video_info

__all__ = ["AUDIO_CODECS", "NoAudioTrack", "has_audio", "read_av", "stream_starts", "write_av", "write_av_preview"]

#: ``audio_codec`` name -> the FFmpeg encoder :func:`write_av` uses (FFmpeg's native AAC encoder; libopus, since the
#: native Opus encoder is experimental).
AUDIO_CODECS = {"aac": "aac", "opus": "libopus"}
_FALLBACK_RATE = 48000  # audio at a rate the encoder cannot take is resampled to this (both codecs take it)
_MISSING_AUDIO = ("error", "silent")
_MIN_SIDE = 64  # preview frames are enlarged (nearest) to at least this many pixels, as VideoAdapter.preview does


class NoAudioTrack(AudioDecodeError):
    """A video file without an audio stream; ``path`` and ``reason`` as in :class:`AudioDecodeError`."""


# ------------------------------------------------------------------------------------------------------------ writing


def _audio_array(audio: Tensor | np.ndarray) -> np.ndarray:
    """``(C, S)`` float (tensor or array), C in {1, 2} -> float32 ``(C, S)`` clipped to [-1, 1] (NaN -> 0)."""
    if isinstance(audio, Tensor):
        audio = audio.detach().float().cpu().numpy()
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] not in (1, 2) or array.shape[1] < 1:
        raise ValueError(f"audio must have shape (channels, samples) with 1 or 2 channels, got {tuple(array.shape)}")
    return np.clip(np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


def _audio_encoder(audio_codec: str, sample_rate: int) -> tuple[av.codec.Codec, int]:
    """The PyAV encoder for ``audio_codec`` and the rate to encode at: ``sample_rate`` when the encoder takes it,
    else :data:`_FALLBACK_RATE`."""
    if audio_codec not in AUDIO_CODECS:
        raise ValueError(f"audio_codec must be one of {tuple(AUDIO_CODECS)}, got {audio_codec!r}")
    name = AUDIO_CODECS[audio_codec]
    try:
        codec = av.codec.Codec(name, "w")
    except ValueError as error:  # av.codec.codec.UnknownCodecError
        raise RuntimeError(
            f"cannot write {audio_codec} audio: this FFmpeg build (PyAV {av.__version__}) has no {name!r} encoder"
        ) from error
    if audio_codec == "opus":  # FFmpeg stores libopus' delay at other rates wrongly (16 kHz decodes 4.3 ms late)
        return codec, _FALLBACK_RATE
    rates = codec.audio_rates
    return codec, sample_rate if not rates or sample_rate in rates else _FALLBACK_RATE


def _audio_frame(chunk: np.ndarray, layout: str, packed: bool, rate: int, pts: int) -> av.AudioFrame:
    """``(C, n)`` float32 -> an :class:`av.AudioFrame` (planar ``fltp``, or interleaved ``flt`` when ``packed``) at
    ``pts`` samples."""
    data = chunk.T.reshape(1, -1) if packed else chunk  # packed: (1, n * C) interleaved
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="flt" if packed else "fltp", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
    return frame


def write_av(
    path: str | Path,
    video: Tensor | np.ndarray,
    fps: float,
    audio: Tensor | np.ndarray,
    sample_rate: int,
    audio_codec: str = "aac",
) -> Path:
    """Write ``video`` and ``audio`` as one mp4: an H.264 video stream and an AAC (or ``"opus"``) audio stream, both
    starting at time 0; returns the path.

    ``video``: float ``(3, F, H, W)`` in [0, 1] (or uint8 ``(F, H, W, 3)``), encoded exactly as
    :func:`~mmdiff.modalities.video.io.write_mp4` does (libx264, yuv420p, CRF 18, frame ``i`` at ``i / fps``; an odd
    size padded to an even one). ``audio``: float ``(C, S)`` in [-1, 1], ``C`` 1 (mono) or 2 (stereo), at
    ``sample_rate`` Hz; sample ``j`` plays at ``j / sample_rate``. A rate the encoder cannot take (AAC: the MPEG-4
    rates 7350 ... 96000 Hz) is resampled to 48 kHz first; Opus is always encoded at 48 kHz, its own rate (at
    other rates this FFmpeg stores the encoder's delay in the wrong unit and the sound plays 4.3 ms late). The encoders' delay is stored
    as the container's edit list (see the module notes), so a player and :func:`read_av` hear sample 0 at frame 0.
    Packets are interleaved a frame at a time (the audio of frame ``i``'s span with frame ``i``). Parent folders are
    created.
    """
    path = Path(path)
    frames = _pad_even(_checked(video, fps))  # (F, H', W', 3) uint8, H' and W' even
    array = _audio_array(audio)  # (C, S)
    if not (math.isfinite(sample_rate) and sample_rate > 0 and int(sample_rate) == sample_rate):
        raise ValueError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    codec, rate = _audio_encoder(audio_codec, int(sample_rate))
    if rate != sample_rate:
        array = AF.resample(torch.from_numpy(array), int(sample_rate), rate).clamp(-1, 1).numpy()  # (C, S * rate / sr)
    packed = "fltp" not in {f.name for f in codec.audio_formats or ()}  # libopus takes interleaved flt
    layout = "mono" if array.shape[0] == 1 else "stereo"
    frame_rate = Fraction(fps).limit_denominator(1001)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        vstream = container.add_stream(_MP4_ENCODER, rate=frame_rate, options={"crf": str(_CRF)})
        vstream.width, vstream.height, vstream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vstream.codec_context.time_base = 1 / frame_rate
        astream = container.add_stream(codec.name, rate=rate, layout=layout)
        total, sent = array.shape[1], 0
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, 1 / frame_rate
            for packet in vstream.encode(frame):
                container.mux(packet)
            # the audio up to the end of this frame's span (all of the rest after the last frame)
            until = total if index == len(frames) - 1 else min(total, round((index + 1) / frame_rate * rate))
            if until > sent:  # PyAV re-chunks each frame to the encoder's frame size
                for packet in astream.encode(_audio_frame(array[:, sent:until], layout, packed, rate, sent)):
                    container.mux(packet)
                sent = until
        for stream in (vstream, astream):
            for packet in stream.encode(None):  # flush the encoders' delayed frames
                container.mux(packet)
    return path


# ------------------------------------------------------------------------------------------------------------ reading


def _start_seconds(stream: av.stream.Stream) -> float:
    """Presentation time (seconds) of a stream's first frame (0 when the container does not say)."""
    if stream.start_time is not None and stream.time_base:
        return float(stream.start_time * stream.time_base)
    return 0.0


def stream_starts(path: str | Path) -> tuple[float, float | None]:
    """``(video start, audio start)`` in seconds: the presentation time of the first video frame and of the first
    audio sample (``None`` when the file has no audio stream), from the header. Raises :class:`AudioDecodeError`
    naming the file when FFmpeg cannot open it or it has no video stream."""
    with open_container(path, AudioDecodeError) as container:
        if not container.streams.video:
            raise AudioDecodeError(path, "no video stream")
        video = _start_seconds(container.streams.video[0])
        audio = _start_seconds(container.streams.audio[0]) if container.streams.audio else None
    return video, audio


def has_audio(path: str | Path) -> bool:
    """Whether ``path`` holds an audio stream (header only). Raises :class:`AudioDecodeError` when FFmpeg cannot open
    the file."""
    with open_container(path, AudioDecodeError) as container:
        return bool(container.streams.audio)


def _audio_span(
    path: str | Path, first: int, count: int, sample_rate: int, channels: int
) -> Tensor:  # (channels, count)
    """Samples ``[first, first + count)`` of :func:`load_audio`'s result (audio time), ``first`` may be negative:
    samples before the audio stream starts, and after it ends, are zeros."""
    lead = min(max(-first, 0), count)  # samples before the audio starts
    audio = torch.zeros(channels, count)
    if count > lead:
        start = max(first, 0)
        got = load_audio(path, sample_rate, channels, offset=start / sample_rate, duration=(count - lead) / sample_rate)
        audio[:, lead : lead + got.shape[1]] = got[:, : count - lead]
    return audio


def read_av(
    path: str | Path,
    num_frames: int,
    fps: float,
    size: tuple[int, int] | None,
    sample_rate: int,
    channels: int = 1,
    start: float = 0.0,
    short_policy: str = "pad",
    missing_audio: str = "error",
) -> dict[str, Tensor]:
    """The clip of ``num_frames`` frames at ``fps`` from ``start`` seconds and its sound: ``{"video": (3, num_frames,
    H, W) float32 in [0, 1], "audio": (channels, S) float32}``, ``S = round(num_frames / fps * sample_rate)``.

    The frames are :func:`~mmdiff.modalities.video.io.read_clip`'s (chosen by timestamp, resized and center-cropped
    to ``size``; ``None`` keeps the source size); the audio is that of the same span ``[start, start + num_frames /
    fps)`` by presentation timestamps (see the module notes), decoded from a seek and resampled to ``sample_rate``
    by :func:`~mmdiff.modalities.audio.io.load_audio` (``channels``: 1 mixes down, 2 keeps or duplicates). Where the
    audio stream starts after the span's start or ends before its end, those samples are silent.

    ``short_policy`` for a span past the video's end, as in ``read_clip``: ``"pad"`` repeats the last frame (and the
    audio goes silent after the file's audio ends), ``"loop"`` wraps time at the video's duration for both tracks,
    ``"skip"`` raises ``ValueError``. A file without an audio stream raises :class:`NoAudioTrack` (naming the file),
    or with ``missing_audio="silent"`` gives zeros. Unreadable files raise
    :class:`~mmdiff.modalities.video.io.VideoDecodeError` or :class:`AudioDecodeError`.
    """
    if missing_audio not in _MISSING_AUDIO:
        raise ValueError(f"missing_audio must be one of {_MISSING_AUDIO}, got {missing_audio!r}")
    if not (math.isfinite(sample_rate) and sample_rate > 0 and int(sample_rate) == sample_rate):
        raise ValueError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 (mono) or 2 (stereo), got {channels!r}")
    if not (start is not None and math.isfinite(start) and start >= 0):
        raise ValueError(f"{path}: start must be seconds >= 0, got {start!r}")
    sample_rate = int(sample_rate)
    video = read_clip(path, num_frames, fps, size, start=float(start), short_policy=short_policy)  # (3, F, H, W)
    count = round(int(num_frames) / fps * sample_rate)  # S
    video_start, audio_start = stream_starts(path)
    if audio_start is None:
        if missing_audio == "silent":
            return {"video": video, "audio": torch.zeros(channels, count)}
        raise NoAudioTrack(path, "no audio track (the file has a video stream only); use missing_audio='silent'")
    shift = video_start - audio_start  # audio time = video time + shift
    duration = video_info(path)["duration"] if short_policy == "loop" else math.inf  # read_clip's: where "loop" wraps
    if start + num_frames / fps > duration + 1e-6:
        period = max(1, round(duration * sample_rate))  # one pass of the video, in samples
        whole = _audio_span(path, round(shift * sample_rate), period, sample_rate, channels)  # (C, period)
        index = (round(start * sample_rate) + torch.arange(count)) % period  # the wrapped sample of each output
        return {"video": video, "audio": whole[:, index].contiguous()}
    first = round((start + shift) * sample_rate)
    return {"video": video, "audio": _audio_span(path, first, count, sample_rate, channels)}


# ------------------------------------------------------------------------------------------------------------ preview


def _clip_pair(item: Any) -> tuple[Tensor, Tensor]:
    """One preview item -> ``(video (3, F, H, W), audio (C, S))`` float CPU tensors: a mapping with ``"video"`` and
    ``"audio"`` (what :func:`read_av` and the data sources give) or a ``(video, audio)`` pair."""
    if isinstance(item, Mapping):
        if "video" not in item or "audio" not in item:
            raise ValueError(f"a preview item needs 'video' and 'audio', got keys {sorted(item)}")
        video, audio = item["video"], item["audio"]
    elif isinstance(item, Sequence) and len(item) == 2:
        video, audio = item
    else:
        raise ValueError(
            f"a preview item is a dict with 'video' and 'audio' or a (video, audio) pair, got {type(item)}"
        )
    video = torch.as_tensor(video).detach().float().cpu()
    audio = torch.as_tensor(audio).detach().float().cpu()
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"preview video must have shape (3, frames, height, width), got {tuple(video.shape)}")
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[1] < 1:
        raise ValueError(f"preview audio must have shape (channels, samples), got {tuple(audio.shape)}")
    return video, audio


def _log_mel(audio: Tensor, sample_rate: int, n_mels: int = 64) -> tuple[Tensor, float]:
    """``(S,)`` -> ``((n_mels, T) natural-log mel magnitudes, hop in seconds)``: torchaudio MelSpectrogram, ~64 ms
    windows centred on every hop (a quarter window), floor 1e-5; for display only."""
    import torchaudio

    n_fft = 2 ** max(4, round(math.log2(0.064 * sample_rate)))  # 1024 at 16 kHz
    n_fft = min(n_fft, 2 ** max(4, int(math.log2(max(audio.shape[-1], 16)))))  # short audio: a shorter window
    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels, power=1.0, norm="slaney", mel_scale="slaney"
    )
    return transform(audio).clamp_min(1e-5).log(), n_fft // 4 / sample_rate


def write_av_preview(
    path: str | Path,
    items: Sequence[Any],
    fps: float,
    sample_rate: int,
    captions: Sequence[str] | None = None,
    max_frames: int = 8,
) -> Path:
    """One PNG: per clip, up to ``max_frames`` evenly spaced frames ABOVE the log-mel spectrogram of its first audio
    channel, on one time axis, titled by its caption; returns the path.

    ``items``: dicts with ``"video"`` (3, F, H, W) in [0, 1] and ``"audio"`` (C, S) (or ``(video, audio)`` pairs).
    Frame ``k`` is drawn over ``[k / fps, (k + 1) / fps)`` of the spectrogram's time axis (seconds), so a sound is
    seen under the frame it belongs to; frames are enlarged (nearest) to at least 64 px as
    :meth:`~mmdiff.modalities.video.adapter.VideoAdapter.preview` does, and every frame slot is at least 64 px wide
    (the figure grows with the clip, up to 2400 px). matplotlib's Agg backend, as the audio adapter's preview.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    clips = [_clip_pair(item) for item in items]
    if not clips:
        raise ValueError("write_av_preview needs at least one clip")
    captions = list(captions) if captions is not None else [""] * len(clips)
    if len(captions) != len(clips):
        raise ValueError(f"got {len(captions)} captions for {len(clips)} clips")
    seconds = max(max(v.shape[1] / fps, a.shape[1] / sample_rate) for v, a in clips)
    dpi, left, right, title, gap, spec_h = 80, 56, 12, 22, 34, 110  # pixels
    px_per_s = min(max(_MIN_SIDE * fps, 480 / seconds), 2400 / seconds)  # frame slots >= 64 px, figure <= 2400 px
    slot = px_per_s / fps  # width of one frame's time slot, pixels
    rows = [max(24.0, slot * v.shape[2] / v.shape[3]) for v, _ in clips]  # frame-row heights keep the frames' aspect
    width = left + seconds * px_per_s + right
    height = sum(title + row + spec_h + gap for row in rows)
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    top = height
    for (video, audio), caption, row in zip(clips, captions, rows):
        scale = max(1, -(-_MIN_SIDE // min(video.shape[-2:])))  # ceil: enlarge small frames, nearest
        frames = video.clamp(0, 1).repeat_interleave(scale, -2).repeat_interleave(scale, -1)  # (3, F, H*s, W*s)
        count = frames.shape[1]
        picks = np.unique(np.linspace(0, count - 1, min(max_frames, count)).round().astype(int))
        top -= title + row
        strip = fig.add_axes((left / width, top / height, seconds * px_per_s / width, row / height))
        for k in picks:
            image = frames[:, k].permute(1, 2, 0).numpy()  # (H*s, W*s, 3)
            strip.imshow(image, extent=(k / fps, (k + 1) / fps, 0, 1), aspect="auto", interpolation="nearest")
        strip.set(xlim=(0, seconds), ylim=(0, 1), yticks=[], xticks=[], facecolor="0.85")  # grey: no frame shown
        strip.set_title(caption, fontsize=9, loc="left")
        top -= spec_h
        spec = fig.add_axes((left / width, top / height, seconds * px_per_s / width, spec_h / height))
        mel, hop = _log_mel(audio[0], sample_rate)  # (n_mels, T); column j is the window centred on j * hop
        spec.imshow(
            mel.numpy(),
            origin="lower",
            aspect="auto",
            cmap="magma",
            extent=(-hop / 2, (mel.shape[1] - 0.5) * hop, 0, mel.shape[0]),
            interpolation="nearest",
        )
        spec.set(xlim=(0, seconds), ylabel="mel bin")
        spec.set_xlabel("s", labelpad=1)
        top -= gap
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
