"""The audio-video adapter: a clip and its soundtrack <-> one packed tensor, mp4 files with sound, previews.

It composes the two media adapters (:class:`~mmdiff.modalities.video.VideoAdapter` for pixels in [-1, 1],
:class:`~mmdiff.modalities.audio.LogMelAdapter` for normalised log-mels and the vocoder) and lays a clip out as
:func:`~mmdiff.nn.joint.clip_packing` says: video ``(3, F, H, W)`` then log-mel ``(M, r F)``, ``r = sample_rate /
(fps * hop_length)`` mel frames per video frame (a whole number, so the two tracks stay aligned at every resolution of
the network). The core samples the packed clip with every sampler unchanged (:class:`~mmdiff.core.Packing`).

Known parts, one model for every task: in training each sample is, by chance, given nothing (joint generation), its
video (video-to-audio), its audio (audio-to-video) or its first frames of both tracks (continuation), as the network
input ``concat`` = ``[known * mask, mask]`` per track. At generation ``video=`` / ``audio=`` (:meth:`load_given`) and
``keep=(start, end)`` in seconds give those parts; the sampler also keeps them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...core.noise import draw
from ...core.packing import Packing
from ...modality import ModalityAdapter
from ...nn.joint import clip_packing
from ..audio.adapter import LogMelAdapter
from ..video.adapter import VideoAdapter

#: The parts of a clip a generation call may give (``pipe.generate(video=...)``, ``mmdiff sample audio=...``).
GIVEN_KEYS = ("video", "audio")


class AudioVideoAdapter(ModalityAdapter):
    """Joint audio-video modality adapter (see the module docstring and :class:`mmdiff.modality.ModalityAdapter`).

    Args:
        video: the video adapter (resolution, fps, default frames); its own ``known_frames`` is not used here.
        audio: the log-mel adapter (sample rate, mels, hop, vocoder); its ``frame_multiple`` must divide the mel
            frames of every clip length used.
        known_video: share of training samples given their video (video-to-audio).
        known_audio: share given their audio (audio-to-video).
        known_start: share given the first ``1..max_known`` frames of both tracks (continuation).
        max_known: at most this many leading frames are given for continuation.
        given_noise_shift: samples given a whole track (video-to-audio, audio-to-video) draw their noise level this
            many times higher (``sigma -> s sigma``, SD3's shift per sample; the loss's ``noise_shift``). The given
            track tells the other most where that one is noisiest: at low noise the audio shows its own onsets, so
            only high-noise samples teach the coupling to read them off the picture. 1: no shift.
        audio_codec: the audio stream of written mp4 files: ``aac`` or ``opus``.
        wav: also write each soundtrack as a wav file beside the mp4.
    """

    given_keys = GIVEN_KEYS

    def __init__(
        self,
        video: VideoAdapter,
        audio: LogMelAdapter,
        known_video: float = 0.15,
        known_audio: float = 0.15,
        known_start: float = 0.1,
        max_known: int = 4,
        given_noise_shift: float = 1.0,
        audio_codec: str = "aac",
        wav: bool = True,
    ):
        for name, p in (("known_video", known_video), ("known_audio", known_audio), ("known_start", known_start)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"adapter.{name} is a probability in [0, 1], got {p}")
        if known_video + known_audio + known_start > 1.0:
            raise ValueError(
                f"adapter.known_video + known_audio + known_start must be <= 1, got "
                f"{known_video} + {known_audio} + {known_start}"
            )
        if not given_noise_shift > 0:
            raise ValueError(f"adapter.given_noise_shift must be > 0 (1: no shift), got {given_noise_shift}")
        if audio_codec not in ("aac", "opus"):
            raise ValueError(f"adapter.audio_codec: expected aac or opus, got {audio_codec!r}")
        ratio = audio.sample_rate / (video.fps * audio.hop_length)
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError(
                f"adapter: sample_rate / (fps * hop_length) = {audio.sample_rate} / ({video.fps} * {audio.hop_length})"
                f" = {ratio:g} mel frames per video frame; it must be a whole number so the tracks stay aligned "
                "(e.g. 16000 Hz, 8 fps, hop 250)"
            )
        self.video, self.audio = video, audio
        self.audio_frames_per_frame = round(ratio)
        self.known_video, self.known_audio, self.known_start = known_video, known_audio, known_start
        self.max_known, self.audio_codec, self.wav = int(max_known), audio_codec, bool(wav)
        self.given_noise_shift = float(given_noise_shift)

    @property
    def noise_prior(self) -> Any:
        """The video adapter's noise prior (``adapter.video.frame_noise_share``) on the video part of packed clips
        ``(B, N)``; the audio's noise stays white. ``None`` when the video's is."""
        return None if self.video.noise_prior is None else self._video_part_prior

    def _video_part_prior(self, noise: Tensor) -> Tensor:
        layout = self.packing(self.frames_of(noise.shape[1]))
        parts = layout.unpack(noise)
        return layout.pack({**parts, "video": self.video.noise_prior(parts["video"])})

    # ---- geometry ----------------------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        return self.video.fps

    @property
    def sample_rate(self) -> int:
        return self.audio.sample_rate

    @property
    def audio_channels(self) -> int:
        return self.audio.channels * self.audio.n_mels

    def packing(self, frames: int, concat: bool = False) -> Packing:
        """The layout of a clip of ``frames`` frames (of its known-part input ``concat`` when asked)."""
        extra = 1 if concat else 0  # the mask channel
        return clip_packing(
            frames, 3 + extra, self.video.resolution, self.audio_channels + extra, self.audio_frames_per_frame
        )

    def frames_of(self, size: int) -> int:
        """Video frames of a packed clip of ``size`` numbers."""
        h, w = self.video.resolution
        per_frame = 3 * h * w + self.audio_channels * self.audio_frames_per_frame
        if size % per_frame:
            raise ValueError(f"a packed clip of {size} numbers is no whole number of frames of {per_frame}")
        return size // per_frame

    def frames_for(self, seconds: float) -> int:
        """Video frames of a clip of ``seconds`` (a whole number of frames, and of the audio network's multiple)."""
        frames = seconds * self.fps
        if seconds <= 0 or not math.isfinite(seconds) or abs(frames - round(frames)) > 1e-6:
            raise ValueError(
                f"length: expected seconds that make a whole number of frames at {self.fps:g} fps "
                f"(e.g. {16 / self.fps:g}), got {seconds!r}"
            )
        frames = round(frames)
        if (frames * self.audio_frames_per_frame) % self.audio.frame_multiple:
            step = self.audio.frame_multiple // math.gcd(self.audio.frame_multiple, self.audio_frames_per_frame)
            raise ValueError(f"length: {seconds:g} s is {frames} frames; the audio network needs a multiple of {step}")
        return frames

    # ---- tensors -----------------------------------------------------------------------------------------------
    def _tracks(self, video: Tensor, audio: Tensor) -> dict[str, Tensor]:
        """Media ``video (B, 3, F, H, W)`` in [0, 1] and ``audio (B, C, S)`` -> the model's tracks."""
        frames = video.shape[2]
        mel = self.audio.waveform_to_mel(audio.float())  # (B, C * M, S // hop + 1)
        need = frames * self.audio_frames_per_frame
        if mel.shape[-1] < need:
            raise ValueError(
                f"audio of {audio.shape[-1]} samples is shorter than {frames} frames at {self.fps:g} fps "
                f"({round(frames / self.fps * self.sample_rate)} samples at {self.sample_rate} Hz)"
            )
        return {"video": video.float() * 2 - 1, "audio": mel[..., :need]}

    def known_concat(self, known: Tensor, mask: Tensor) -> Tensor:
        """``[known * mask, mask]`` per track, packed: ``known (B, N)``, ``mask`` broadcastable to it."""
        frames = self.frames_of(known.shape[1])
        mask = mask.to(known).expand_as(known)
        parts, masks = self.packing(frames).unpack(known), self.packing(frames).unpack(mask)
        joined = {name: torch.cat([parts[name] * masks[name], masks[name][:, :1]], dim=1) for name in parts}
        return self.packing(frames, concat=True).pack(joined)

    def known_mask(self, x0: Tensor, generator: Any = None) -> Tensor:
        """Per sample: its video, its audio, its first ``1..max_known`` frames of both, or nothing (see the class)."""
        b, frames = x0.shape[0], self.frames_of(x0.shape[1])
        u = draw("uniform", (b, 2), generator, x0.device)  # (B, 2): which task, how many frames
        cut = torch.tensor([self.known_video, self.known_audio, self.known_start], device=x0.device).cumsum(0)
        video_known, audio_known = u[:, 0] < cut[0], (u[:, 0] >= cut[0]) & (u[:, 0] < cut[1])
        start_known = (u[:, 0] >= cut[1]) & (u[:, 0] < cut[2])
        count = torch.where(start_known, 1 + (u[:, 1] * min(self.max_known, frames - 1)).long(), 0)  # (B,)
        frame = torch.arange(frames, device=x0.device)
        leading = (frame[None] < count[:, None]).float()  # (B, F)
        audio_frame = frame.repeat_interleave(self.audio_frames_per_frame)
        video_mask = torch.maximum(leading, video_known[:, None].float())  # (B, F)
        audio_mask = torch.maximum(leading[:, audio_frame], audio_known[:, None].float())  # (B, r F)
        layout = self.packing(frames)
        shapes = layout.shapes
        return layout.pack(
            {
                "video": video_mask[:, None, :, None, None].expand(b, *shapes["video"]),
                "audio": audio_mask[:, None].expand(b, *shapes["audio"]),
            }
        )

    # ---- the adapter protocol ----------------------------------------------------------------------------------
    def encode(self, batch: dict[str, Any], generator: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        video, audio = batch["video"], batch["audio"]  # (B, 3, F, H, W) in [0, 1], (B, C, S)
        if video.ndim != 5 or video.shape[1] != 3 or tuple(video.shape[3:]) != self.video.resolution:
            h, w = self.video.resolution
            raise ValueError(f"video batch must be (B, 3, frames, {h}, {w}) in [0, 1], got {tuple(video.shape)}")
        if audio.ndim != 3 or audio.shape[1] != self.audio.channels:
            raise ValueError(f"audio batch must be (B, {self.audio.channels}, samples), got {tuple(audio.shape)}")
        layout = self.packing(video.shape[2])
        x0 = layout.pack(self._tracks(video, audio))  # (B, N)
        known = self.training_known(x0, generator)  # concat, known_mask (B, N)
        if self.given_noise_shift != 1.0:  # the loss's per-sample noise_shift for samples given a whole track
            parts = layout.unpack(known["known_mask"]).values()
            given = torch.stack([part.flatten(1).amin(1) > 0 for part in parts]).any(0)  # (B,)
            known["noise_shift"] = torch.where(given, self.given_noise_shift, 1.0)
        return x0, known

    def decode(self, x: Tensor) -> list[dict[str, Tensor]]:
        """Packed clips -> ``{"video": (3, F, H, W) in [0, 1], "audio": (C, S)}`` each, ``S = F / fps * rate``."""
        frames = self.frames_of(x.shape[1])
        parts = self.packing(frames).unpack(x.float())
        videos = self.video.decode(parts["video"])
        waves = self.audio.mel_to_waveform(parts["audio"]).cpu()  # (B, C, ~S)
        samples = round(frames / self.fps * self.sample_rate)
        waves = torch.nn.functional.pad(waves, (0, max(0, samples - waves.shape[-1])))[..., :samples]
        return [{"video": v, "audio": a} for v, a in zip(videos, waves)]

    def sample_shape(self, length: float | None = None) -> tuple[int, ...]:
        """``(N,)`` for ``length`` seconds (default: the video adapter's ``num_frames``)."""
        frames = self.video.num_frames if length is None else self.frames_for(float(length))
        return (self.packing(frames).size,)

    def write(self, items: list[dict[str, Tensor]], directory: Path, prefix: str = "sample") -> list[Path]:
        """One mp4 per clip (H.264 + AAC/Opus) and, with ``wav``, its soundtrack as a wav file."""
        from ..audio.io import write_audio
        from .io import write_av

        directory = Path(directory)
        paths = []
        for i, item in enumerate(items):
            stem = directory / f"{prefix}_{i:03d}"
            paths.append(
                write_av(
                    stem.with_suffix(".mp4"), item["video"], self.fps, item["audio"], self.sample_rate, self.audio_codec
                )
            )
            if self.wav:
                write_audio(stem.with_suffix(".wav"), item["audio"], self.sample_rate)
        return paths

    def preview(self, items: list[dict[str, Tensor]], path: Path, captions: list[str] | None = None) -> Path:
        """Frames above the time-aligned spectrogram, one row per clip (:func:`.io.write_av_preview`)."""
        from .io import write_av_preview

        return write_av_preview(path, items, self.fps, self.sample_rate, captions)

    # ---- editing and given parts -------------------------------------------------------------------------------
    def _read(self, source: Any, frames: int | None, missing_audio: str = "error") -> dict[str, Tensor]:
        """A file with video and sound, or a ``{"video", "audio"}`` item -> media tensors (``frames`` long)."""
        if isinstance(source, Mapping):
            return {"video": torch.as_tensor(source["video"]).float(), "audio": torch.as_tensor(source["audio"])}
        if not isinstance(source, (str, Path)):
            raise ValueError(
                f"init: expected a video file with sound or a {{'video', 'audio'}} item, got {type(source).__name__}"
            )
        from .io import read_av

        return read_av(
            source,
            frames or self.video.num_frames,
            self.fps,
            self.video.resolution,
            self.sample_rate,
            self.audio.channels,
            short_policy="pad",
            missing_audio=missing_audio,
        )

    def load_init(self, source: Any, length: float | None = None) -> Tensor:
        """A video file with sound (or a ``{"video", "audio"}`` item) -> the packed clip ``(N,)`` of ``length``
        seconds (default: the video adapter's frames), for SDEdit and ``keep=`` (continuation of both tracks)."""
        frames = self.video.num_frames if length is None else self.frames_for(float(length))
        item = self._read(source, frames)
        video = self._fit_video(item["video"], frames)
        audio = self._fit_audio(item["audio"], frames)
        return self.packing(frames).pack(self._tracks(video[None], audio[None]))[0]

    def _fit_video(self, clip: Tensor, frames: int) -> Tensor:
        """A clip ``(3, F', H, W)`` in [0, 1] (or one image ``(3, H, W)``) cut or extended (last frame) to ``frames``."""
        clip = torch.as_tensor(clip, dtype=torch.float32)
        if clip.ndim == 3:
            clip = clip[:, None]
        if clip.ndim != 4 or clip.shape[0] != 3 or tuple(clip.shape[2:]) != self.video.resolution:
            h, w = self.video.resolution
            raise ValueError(f"video: expected (3, frames, {h}, {w}) in [0, 1], got {tuple(clip.shape)}")
        if clip.shape[1] < frames:
            clip = torch.cat([clip, clip[:, -1:].expand(-1, frames - clip.shape[1], -1, -1)], dim=1)
        return clip[:, :frames]

    def _fit_audio(self, audio: Tensor, frames: int) -> Tensor:
        """A waveform ``(C, S')`` (or ``(S',)``) zero-padded or cut to the samples of ``frames`` frames."""
        audio = torch.as_tensor(audio, dtype=torch.float32)
        audio = audio.reshape(1, -1) if audio.ndim == 1 else audio
        if audio.ndim != 2 or audio.shape[0] != self.audio.channels:
            raise ValueError(f"audio: expected ({self.audio.channels}, samples), got {tuple(audio.shape)}")
        samples = round(frames / self.fps * self.sample_rate)
        return torch.nn.functional.pad(audio, (0, max(0, samples - audio.shape[-1])))[:, :samples]

    def load_given(self, given: Mapping[str, Any], n: int, length: float | None = None) -> tuple[Tensor, Tensor]:
        """Parts of the clips a call gives -> ``(known (n, N), mask (1, N))``, the mask 1 on the given tracks.

        ``video=``: a video file (its sound, if any, is not used), a ``(3, F, H, W)`` clip in [0, 1], or a list of
        ``n`` of them (one per sample): video-to-audio. ``audio=``: an audio file, a ``(C, S)`` waveform, or a list:
        audio-to-video. The clip length is ``length`` seconds, else the given video's, else the video adapter's."""
        unknown = sorted(set(given) - set(GIVEN_KEYS))
        if unknown or not given:
            raise ValueError(f"given parts: expected video= and/or audio=, got {sorted(given)}")
        per_sample = {key: self._per_sample(key, value, n) for key, value in given.items()}
        if length is not None:
            frames = self.frames_for(float(length))
        elif "video" in per_sample and torch.is_tensor(first := per_sample["video"][0]) and first.ndim == 4:
            frames = first.shape[1]
        else:
            frames = self.video.num_frames
        h, w = self.video.resolution
        video = torch.zeros(n, 3, frames, h, w)
        audio = torch.zeros(n, self.audio.channels, round(frames / self.fps * self.sample_rate))
        readers = {"video": lambda source: self._load_video(source, frames), "audio": self._load_audio}
        decoded: dict[tuple[str, str], Tensor] = {}  # a file given for several samples is decoded once

        def load(key: str, source: Any) -> Tensor:
            if not isinstance(source, (str, Path)):
                return readers[key](source)
            if (key, str(source)) not in decoded:
                decoded[key, str(source)] = readers[key](source)
            return decoded[key, str(source)]

        for i in range(n):
            if "video" in per_sample:
                video[i] = self._fit_video(load("video", per_sample["video"][i]), frames)
            if "audio" in per_sample:
                audio[i] = self._fit_audio(load("audio", per_sample["audio"][i]), frames)
        known = self.packing(frames).pack(self._tracks(video, audio))
        return known, self.given_mask(known.shape, list(per_sample))

    def given_mask(self, shape: tuple[int, ...], keys: list[str]) -> Tensor:
        """``(1, N)``: 1 on the tracks named in ``keys`` (``video``, ``audio``) of clips of ``shape`` ``(B, N)``."""
        unknown = sorted(set(keys) - set(GIVEN_KEYS))
        if unknown:
            raise ValueError(f"parts: expected video and/or audio, got {unknown}")
        return self.packing(self.frames_of(shape[-1])).mask({key: 1.0 for key in keys})

    @staticmethod
    def _per_sample(key: str, value: Any, n: int) -> list[Any]:
        if isinstance(value, (list, tuple)):
            if len(value) != n:
                raise ValueError(f"{key}: a list of {len(value)} for n={n} samples; give one, or one per sample")
            return list(value)
        return [value] * n

    def _load_video(self, source: Any, frames: int) -> Tensor:
        if isinstance(source, (str, Path)):
            from ..video.io import read_clip

            return read_clip(source, frames, self.fps, self.video.resolution, start=0.0, short_policy="pad")
        return torch.as_tensor(source, dtype=torch.float32)

    def _load_audio(self, source: Any) -> Tensor:
        if isinstance(source, (str, Path)):
            from ..audio.io import load_audio

            return load_audio(source, self.sample_rate, self.audio.channels)
        return torch.as_tensor(source, dtype=torch.float32)

    def known_conditions(self, known: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """The network's known-part input for ``known (B, N)`` given where ``mask`` is 1."""
        return {"concat": self.known_concat(known, mask.to(known.device))}

    def range_mask(self, shape: tuple[int, ...], start: float, end: float) -> Tensor:
        """``(1, N)``: 1 on the frames and mel frames of ``[start, end)`` seconds, in both tracks."""
        if not 0 <= start < end:
            raise ValueError(f"keep range must satisfy 0 <= start < end (seconds), got ({start}, {end})")
        frames = self.frames_of(shape[-1])
        video_t = torch.arange(frames) / self.fps  # frame start times
        audio_t = torch.arange(frames * self.audio_frames_per_frame) * self.audio.hop_length / self.sample_rate
        return self.packing(frames).mask(
            {
                "video": ((video_t >= start) & (video_t < end)).float().reshape(1, frames, 1, 1),
                "audio": ((audio_t >= start) & (audio_t < end)).float().reshape(1, -1),
            }
        )
