"""Audio file input/output through PyAV (FFmpeg): decode any format, resample, fix the channel count, write files.

Why PyAV: one decoder for every container and codec a dataset may hold (wav of any bit depth, flac, mp3, ogg/vorbis,
opus, m4a/aac, aiff), the same library the video modality uses, and no dependency on torchaudio's changing I/O
backends. Resampling is :func:`torchaudio.functional.resample` (band-limited sinc), done once per file on load.

Windows (``load_audio(..., offset=, duration=)``) decode only what they need: one seek to a packet before the window
(less a pre-roll, because mp3, aac and opus frames need the frames before them to decode correctly), decoding
forward, placing each frame by its timestamp and stopping past the window's end; then resampling a window a few
filter lengths wider, aligned to the resampler's phase period, so the samples equal those of a full decode and
resample sliced at the same place (exactly for wav and flac, within the codec's own tolerance for lossy ones).

Every failure to read a file is an :class:`AudioDecodeError` that names the file and the reason, so that a dataset
scan can skip it with a readable warning and a training run that meets it later stops with a message a user can act on.
"""

from __future__ import annotations

import math
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torchaudio.functional as AF
from torch import Tensor

from ..containers import first_stream, open_container

__all__ = ["WRITE_FORMATS", "AudioDecodeError", "audio_info", "decoded_length", "load_audio", "write_audio"]

# Full scale of each integer sample format FFmpeg decodes to (planar variants end in "p": "s16p", "fltp").
_INT_SCALE = {"s16": 2.0**15, "s32": 2.0**31, "s64": 2.0**63}
_FLOAT_FORMATS = {"flt", "dbl"}
_LAYOUTS = {1: "mono", 2: "stereo"}
_MP3_ENCODER = "libmp3lame"
WRITE_FORMATS = (".wav", ".flac", ".mp3")
# Seconds decoded before a window's start and thrown away, so that the decoder's state (mp3 bit reservoir and
# overlap, aac overlap, opus prediction: RFC 7845 sec. 4.6 asks for at least 80 ms) is what it is in a full decode.
# Codecs whose frames decode independently need none.
_PREROLL_S = 0.5
_NO_PREROLL = ("pcm_", "flac", "alac", "wavpack", "tta")
# torchaudio.functional.resample's defaults, needed to size the margin of a resampled window.
_LOWPASS_WIDTH, _ROLLOFF = 6, 0.99


class AudioDecodeError(ValueError):
    """A file that cannot be opened or decoded as audio; ``path`` and ``reason`` are kept as attributes."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"cannot read audio from {self.path}: {reason}")


# ----------------------------------------------------------------------------------------------------------- decoding


def _open(path: str | Path) -> av.container.InputContainer:
    """Open ``path`` with PyAV; every FFmpeg/OS failure, and an empty file, is an :class:`AudioDecodeError`."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:  # FFmpeg's own word for it is "Invalid data found"
        raise AudioDecodeError(path, "the file is empty (0 bytes)")
    return open_container(path, AudioDecodeError)


def _audio_stream(container: av.container.InputContainer, path: str | Path) -> av.AudioStream:
    return first_stream(container, "audio", path, AudioDecodeError)


def _frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame -> float32 ``(channels, samples)``; integer formats scaled to [-1, 1], floats kept as is."""
    array = frame.to_ndarray()  # planar: (C, n); packed (interleaved): (1, n * C)
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        array = array.reshape(-1, channels).T  # (n * C,) interleaved -> (C, n)
    name = frame.format.name.removesuffix("p")
    if name in _FLOAT_FORMATS:
        return array.astype(np.float32, copy=False)
    if name == "u8":
        return ((array.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if name in _INT_SCALE:
        return (array.astype(np.float64) / _INT_SCALE[name]).astype(np.float32)
    raise ValueError(f"unexpected sample format {frame.format.name!r}")


@contextmanager
def _reading(path: str | Path) -> Iterator[tuple[av.container.InputContainer, av.AudioStream]]:
    """One decoding pass over ``path``: its container and first audio stream, closed afterwards; an FFmpeg or OS
    failure, or an unexpected sample format, inside the pass becomes an :class:`AudioDecodeError` naming the file."""
    container = _open(path)
    try:
        yield container, _audio_stream(container, path)
    except AudioDecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as error:  # FFmpeg errors, an unexpected sample format
        raise AudioDecodeError(path, f"decoding failed ({error.__class__.__name__}: {error})") from error
    finally:
        container.close()


def _decode(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode every frame of the first audio stream: ``(float32 (C, T), native sample rate)``."""
    with _reading(path) as (container, stream):
        chunks, rate = [], stream.rate
        for frame in container.decode(stream):
            chunk = _frame_to_float(frame)  # (C, n)
            if chunks and chunk.shape[0] != chunks[0].shape[0]:
                raise AudioDecodeError(
                    path, f"channel count changes mid-stream ({chunks[0].shape[0]} -> {chunk.shape[0]})"
                )
            rate = frame.sample_rate or rate
            chunks.append(chunk)
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise AudioDecodeError(path, "it decodes to zero samples")
    if not rate:
        raise AudioDecodeError(path, "the audio stream has no sample rate")
    return np.concatenate(chunks, axis=1), int(rate)


def _fix_channels(waveform: Tensor, channels: int) -> Tensor:
    """``(C_in, T) -> (channels, T)``: mean to mono; mono duplicated to stereo; more than two kept as first two."""
    if channels == 1:
        return waveform.mean(dim=0, keepdim=True)
    if waveform.shape[0] == 1:
        return waveform.expand(2, -1).clone()
    return waveform[:2]  # stereo kept; for surround layouts FFmpeg orders front-left, front-right first


def _decode_window(path: str | Path, first: int, last: int | None) -> tuple[np.ndarray, int, bool]:
    """Samples ``[first, last)`` (native-rate indices into a full decode; ``last=None``: to the end) of ``path``.

    Returns ``(float32 (C, k), native rate, reached_end)``, ``k = last - first`` unless the file ends first
    (``reached_end``). Seeks to a packet before ``first`` less :data:`_PREROLL_S`, decodes forward, places every frame
    at ``(pts - stream start) * rate`` (the start is mp3's/aac's encoder delay when the container states it, the
    index a full decode gives sample 0) and stops once ``last`` is decoded. Where the container cannot seek, frames
    have no timestamps, or the seek lands after ``first``, decodes from the start instead, counting samples.
    """
    arrays: list[np.ndarray] | None = None
    if first > 0:
        arrays, rate, end = _decode_span(path, first, last, seek=True)
    if arrays is None:
        arrays, rate, end = _decode_span(path, first, last, seek=False)
    array = np.concatenate(arrays, axis=1) if arrays else np.zeros((0, 0), np.float32)
    return array, rate, end


def _decode_span(path: str | Path, first: int, last: int | None, seek: bool):
    """One pass for :func:`_decode_window`: ``(chunks, rate, reached_end)``, chunks ``None`` when a seek failed."""
    with _reading(path) as (container, stream):
        rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        if not rate:
            raise AudioDecodeError(path, "the audio stream has no sample rate")
        origin = Fraction(stream.start_time or 0) * stream.time_base  # seconds of full-decode sample 0
        if seek:
            preroll = 0.0 if stream.codec_context.name.startswith(_NO_PREROLL) else _PREROLL_S
            target = origin + Fraction(first, rate) - Fraction(preroll)
            if target <= 0:
                seek = False  # the window starts within the pre-roll: decoding from the start is as cheap
            else:
                try:
                    container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
                except (av.FFmpegError, OSError, ValueError):
                    return None, rate, False
        chunks, position, channels, reached_end = [], 0, None, True
        for frame in container.decode(stream):
            chunk = _frame_to_float(frame)  # (C, n)
            if channels is None:
                channels = chunk.shape[0]
            elif chunk.shape[0] != channels:
                raise AudioDecodeError(path, f"channel count changes mid-stream ({channels} -> {chunk.shape[0]})")
            if frame.sample_rate and frame.sample_rate != rate:
                raise AudioDecodeError(path, f"sample rate changes mid-stream ({rate} -> {frame.sample_rate} Hz)")
            if seek:
                if frame.pts is None or frame.time_base is None:
                    return None, rate, False
                at = round((frame.pts * frame.time_base - origin) * rate)
                if not chunks and at > first:  # landed after the window: decode from the start instead
                    return None, rate, False
                position = at
            lo, hi = max(first - position, 0), chunk.shape[1] if last is None else min(last - position, chunk.shape[1])
            if hi > lo:
                chunks.append(chunk[:, lo:hi])
            position += chunk.shape[1]
            if last is not None and position >= last:
                reached_end = False
                break
    if channels is None:
        raise AudioDecodeError(path, "it decodes to zero samples")
    if not chunks:
        chunks = [np.zeros((channels, 0), np.float32)]
    return chunks, rate, reached_end


def _resampled_length(length: int, rate: int, sample_rate: int) -> int:
    """Samples :func:`torchaudio.functional.resample` returns for ``length`` samples at ``rate``: its own formula
    (``ceil`` of a float32 product, after dividing both rates by their gcd), so that the count matches exactly."""
    if rate == sample_rate:
        return length
    gcd = math.gcd(int(rate), int(sample_rate))
    orig, new = int(rate) // gcd, int(sample_rate) // gcd
    return int(torch.ceil(torch.as_tensor(new * length / orig)).long())


def decoded_length(duration: float, rate: int, sample_rate: int) -> int:
    """Samples ``load_audio(path, sample_rate)`` returns for a file whose :func:`audio_info` says ``duration``
    seconds at ``rate`` Hz: exact where the header's duration is (wav, flac, mp3 with a Xing/LAME header, ogg/opus,
    m4a/aac from FFmpeg's encoder); an estimate where the header's duration is one (mp3 without a Xing header)."""
    return _resampled_length(round(duration * rate), rate, sample_rate)


def load_audio(
    path: str | Path, sample_rate: int, channels: int = 1, offset: float = 0.0, duration: float | None = None
) -> Tensor:
    """Decode ``path`` (any format FFmpeg reads) into a float32 ``(channels, samples)`` tensor at ``sample_rate``.

    ``channels=1`` mixes down to mono (mean of the channels); ``channels=2`` keeps stereo, duplicating a mono file and
    keeping the front pair of a surround one. Integer PCM is scaled to [-1, 1]; float PCM and lossy codecs are kept as
    decoded (lossy codecs may overshoot 1 slightly). Raises :class:`AudioDecodeError` for unreadable files, files
    without an audio stream and files with no samples.

    ``offset`` and ``duration`` (seconds) ask for a window: the samples ``[round(offset * sample_rate), + round(duration
    * sample_rate))`` of the whole file's result (fewer where the file ends first; ``duration=None``: to the end).
    Only that window is decoded, from a seek (see the module notes), and only it is resampled; the samples equal the
    whole-file result's exactly for wav and flac and within the codec's tolerance for lossy formats (mp3 and aac:
    ~1e-7; opus, whose decoder state never fully resets, ~1e-3 of full scale).
    """
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 (mono) or 2 (stereo), got {channels}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate}")
    if not (offset >= 0 and (duration is None or duration >= 0)):
        raise ValueError(f"offset and duration must be seconds >= 0, got offset={offset}, duration={duration}")
    if offset == 0 and duration is None:
        array, rate = _decode(path)
        waveform = _fix_channels(torch.from_numpy(array), channels)  # (channels, T_native)
        if rate != sample_rate:
            waveform = AF.resample(waveform, rate, int(sample_rate))  # (channels, ~T_native * sample_rate / rate)
        return waveform.contiguous().float()
    start = round(offset * sample_rate)
    stop = None if duration is None else start + round(duration * sample_rate)
    return _load_window(path, int(sample_rate), channels, start, stop)


def _load_window(path: str | Path, sample_rate: int, channels: int, start: int, stop: int | None) -> Tensor:
    """``load_audio(path, sample_rate, channels)[:, start:stop]``, decoding and resampling only a window around it.

    The resampler (a polyphase sinc filter, :func:`torchaudio.functional.resample`) maps each block of ``orig``
    input samples to ``new`` output samples (the rates divided by their gcd), each output reading ``width`` inputs
    either side. A window that starts on a block boundary ``a * orig`` and reaches ``margin`` blocks beyond the
    wanted outputs on both sides therefore gives the full resample's outputs shifted by ``a * new``; at the file's
    end the window is padded with zeros as the full resample pads the file.
    """
    if stop is not None and stop <= start:
        return torch.zeros(channels, 0)
    info_rate = _native_rate(path)
    if info_rate == sample_rate:
        array, _, _ = _decode_window(path, start, stop)
        return _fix_channels(torch.from_numpy(array), channels).contiguous().float()
    gcd = math.gcd(info_rate, sample_rate)
    orig, new = info_rate // gcd, sample_rate // gcd
    width = math.ceil(_LOWPASS_WIDTH * orig / (min(orig, new) * _ROLLOFF))  # torchaudio's kernel half-width
    margin = -(-width // orig) + 2  # blocks either side
    first_block = max(start // new - margin, 0)
    first = first_block * orig  # native index of the window's first sample
    last = None if stop is None else (-(-stop // new) + margin) * orig
    array, rate, reached_end = _decode_window(path, first, last)
    if rate != info_rate:  # the header and the decoder disagree: the whole file, to be safe
        return load_audio(path, sample_rate, channels)[:, start:stop]
    waveform = _fix_channels(torch.from_numpy(array), channels)  # (channels, W_native)
    outputs = None
    if reached_end or last is None:
        total = first + waveform.shape[1]  # the file's native length
        outputs = _resampled_length(total, rate, sample_rate) - first_block * new  # full result's end, window-relative
        waveform = torch.nn.functional.pad(waveform, (0, (margin + 1) * orig))  # the zeros the full resample pads
    resampled = AF.resample(waveform.contiguous(), rate, sample_rate)  # (channels, ~W_native * new / orig)
    lo = start - first_block * new
    hi = resampled.shape[1] if stop is None else stop - first_block * new
    if outputs is not None:
        hi = min(hi, outputs)
    return resampled[:, lo : max(hi, lo)].contiguous().float()


def _native_rate(path: str | Path) -> int:
    """The first audio stream's sample rate from the header (no decoding)."""
    container = _open(path)
    try:
        rate = int(_audio_stream(container, path).rate or 0)
    finally:
        container.close()
    if not rate:
        raise AudioDecodeError(path, "the audio stream has no sample rate")
    return rate


def _stream_duration(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """Duration in seconds from the stream or the container header, ``None`` when neither states one."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _decoded_duration(container: av.container.InputContainer, stream: av.AudioStream, duration: float) -> float:
    """The header's ``duration`` corrected to what FFmpeg's decoder returns, where the two differ by rule.

    Ogg/Opus: the stream's duration counts the pre-skip (RFC 7845 sec. 4.2) that the decoder drops. AAC in mp4/m4a:
    the decoder returns every packet at or after time 0 in whole frames (the end padding the edit list trims is
    kept), so ``(packets - priming packets) * frame size``. Elsewhere the header's duration is returned unchanged.
    """
    ctx, rate = stream.codec_context, int(stream.rate)
    if ctx.name == "opus" and container.format.name == "ogg" and ctx.delay > 0:
        return max(round(duration * rate) - ctx.delay, 0) / rate
    if ctx.name == "aac" and "mp4" in container.format.name.split(",") and stream.frames > 0 and ctx.frame_size > 0:
        try:
            packet = next(p for p in container.demux(stream) if p.size)
        except (StopIteration, av.FFmpegError, OSError):
            return duration
        priming = -packet.pts * packet.time_base * rate if packet.pts is not None and packet.pts < 0 else 0
        return (stream.frames * ctx.frame_size - int(priming)) / rate
    return duration


def audio_info(path: str | Path) -> dict[str, Any]:
    """``{"sample_rate", "channels", "duration" (seconds), "codec"}`` of the first audio stream of ``path``.

    Read from the container header when it states a duration (cheap; for mp3 without a Xing header an estimate from
    the bit rate); otherwise, or when the header says 0 s, the file is decoded. The duration is that of what
    :func:`load_audio` returns (Ogg/Opus pre-skip left out, AAC's end padding counted: :func:`_decoded_duration`),
    so that ``round(duration * sample_rate)`` is a full decode's sample count wherever the header is exact. Raises
    :class:`AudioDecodeError` like :func:`load_audio`.
    """
    container = _open(path)
    try:
        stream = _audio_stream(container, path)
        ctx = stream.codec_context
        info = {"sample_rate": int(stream.rate or 0), "channels": int(ctx.channels), "codec": ctx.name}
        duration = _stream_duration(container, stream)
        if duration and info["sample_rate"]:
            duration = _decoded_duration(container, stream, duration)
    finally:
        container.close()
    if not duration or not info["sample_rate"] or not info["channels"]:
        array, rate = _decode(path)  # no usable header: decode, which also rejects empty files
        info.update(sample_rate=rate, channels=array.shape[0], duration=array.shape[1] / rate)
    else:
        info["duration"] = duration
    return info


# ----------------------------------------------------------------------------------------------------------- encoding


def _as_array(waveform: Tensor | np.ndarray) -> np.ndarray:
    """``(C, T)`` or ``(T,)`` tensor/array -> float32 ``(C, T)`` in [-1, 1] (NaN -> 0, +-inf -> +-1)."""
    if isinstance(waveform, Tensor):
        waveform = waveform.detach().float().cpu().numpy()
    array = np.asarray(waveform, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"waveform must have shape (channels, samples) with both > 0, got {tuple(array.shape)}")
    array = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(array, -1.0, 1.0)


def _write_wav(path: Path, array: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM wav with the standard library: any channel count."""
    pcm = np.round(array.T * 32767.0).astype("<i2")  # (T, C) interleaved, little-endian
    with wave.open(str(path), "wb") as out:
        out.setnchannels(array.shape[0])
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def _layout(array: np.ndarray, suffix: str) -> str:
    if array.shape[0] not in _LAYOUTS:
        raise ValueError(f"{suffix} files are written mono or stereo here, got {array.shape[0]} channels; use .wav")
    return _LAYOUTS[array.shape[0]]


def _encode(path: Path, array: np.ndarray, sample_rate: int, codec: str, frame_format: str) -> None:
    """Encode ``array`` (C, T) with the PyAV encoder ``codec``; PyAV re-chunks the one big frame to the codec's size."""
    layout = _layout(array, path.suffix)
    if frame_format == "s16":
        data = np.round(array.T.reshape(1, -1) * 32767.0).astype(np.int16)  # packed: (1, T * C)
    else:
        data = np.ascontiguousarray(array)  # planar float: (C, T)
    frame = av.AudioFrame.from_ndarray(data, format=frame_format, layout=layout)
    frame.sample_rate, frame.pts = sample_rate, 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):  # flush
            container.mux(packet)


def _check_mp3(sample_rate: int) -> None:
    """A clear error when this FFmpeg build has no mp3 encoder or the encoder cannot take ``sample_rate``."""
    try:
        codec = av.codec.Codec(_MP3_ENCODER, "w")
    except ValueError as error:  # av.codec.codec.UnknownCodecError
        raise RuntimeError(
            f"cannot write .mp3: this FFmpeg build (PyAV {av.__version__}) has no {_MP3_ENCODER!r} encoder; "
            "write .wav or .flac instead"
        ) from error
    rates = codec.audio_rates
    if rates and sample_rate not in rates:
        raise ValueError(f"mp3 ({_MP3_ENCODER}) cannot encode {sample_rate} Hz; supported rates: {sorted(rates)}")


def write_audio(path: str | Path, waveform: Tensor | np.ndarray, sample_rate: int) -> Path:
    """Write ``waveform`` (C, T) (or (T,) for mono) to ``path``; the format follows the suffix. Returns the path.

    ``.wav``: 16-bit PCM (standard library, any channel count); ``.flac``: 16-bit FLAC; ``.mp3``: libmp3lame at its
    default bit rate. Samples are clipped to [-1, 1] (NaN written as silence); parent folders are created.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_FORMATS:
        raise ValueError(
            f"cannot write audio to {path}: unknown suffix {path.suffix!r}; supported: {', '.join(WRITE_FORMATS)}"
        )
    if not (math.isfinite(sample_rate) and sample_rate > 0 and int(sample_rate) == sample_rate):
        raise ValueError(f"sample_rate must be a positive whole number of Hz, got {sample_rate}")
    sample_rate = int(sample_rate)
    array = _as_array(waveform)  # (C, T) in [-1, 1]
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".wav":
        _write_wav(path, array, sample_rate)
    elif suffix == ".flac":
        _encode(path, array, sample_rate, "flac", "s16")
    else:
        _check_mp3(sample_rate)
        _encode(path, array, sample_rate, _MP3_ENCODER, "fltp")
    return path


def write_clips(
    items: list[Tensor], directory: str | Path, sample_rate: int, file_format: str, prefix: str = "sample"
) -> list[Path]:
    """Write each waveform of ``items`` as ``directory/<prefix>_<i:03d>.<file_format>``; return the paths (the
    audio adapters' ``write``)."""
    return [
        write_audio(Path(directory) / f"{prefix}_{i:03d}.{file_format}", item, sample_rate)
        for i, item in enumerate(items)
    ]
