"""A dataset of fixed-length clips with their sound from a folder of videos with an audio track.

It is a :class:`~mmdiff.modalities.video.folder.VideoFolder` whose items also carry the audio of the clip's time span
(:func:`~mmdiff.modalities.av.io.read_av`: aligned by presentation timestamps, resampled): the same shared folder scan
(:mod:`mmdiff.modalities.folders`: scan cache, captions from ``metadata.csv`` / ``metadata.jsonl`` or sidecar
``.txt``, a warning naming each file left out), the same clip starts drawn from the item seed, the same evaluation
crops and the same bad-file rules, plus one: a file without an audio track is skipped with a warning naming it
(``no_audio="skip"``), or used with silent audio (``no_audio="silent"``, for a folder where a few clips are silent).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..audio.io import AudioDecodeError, audio_info
from ..folders import SkipFile, caption_summary, format_summary, scan_folder
from ..item_keys import file_item_key
from ..video.folder import VideoFolder, _check_args
from .io import has_audio, read_av

__all__ = ["AV_EXTENSIONS", "NO_AUDIO_POLICIES", "AudioVideoFolder"]

AV_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".m4v", ".avi")  # containers that carry sound (gif never does)
NO_AUDIO_POLICIES = ("skip", "silent")


@dataclass(frozen=True)
class _AVFile:
    """One usable file: what its header says of the video (as VideoFolder keeps it) and of the audio
    (``audio_rate == 0``: no audio track, used silent), its class index (-1 when unlabeled), its caption."""

    path: Path
    fps: float
    duration: float
    width: int
    height: int
    label: int = -1
    caption: str = ""
    audio_rate: int = 0
    audio_channels: int = 0
    audio_codec: str = ""


class AudioVideoFolder(VideoFolder):
    """Clips of ``num_frames`` frames at ``fps`` (resized and center-cropped to ``size=(H, W)``) with the audio of the
    same span at ``sample_rate`` Hz, from the videos under ``root`` (searched recursively for ``extensions``).

    Items are ``{"video": (3, num_frames, H, W) float32 in [0, 1], "audio": (channels, S) float32, "caption": str}``,
    ``S = round(num_frames / fps * sample_rate)``, plus ``"label"`` (int64, 0-dim) when ``labels="subfolder"``.
    Keys, captions, labels, clip starts, ``short_policy`` (the audio goes silent where ``"pad"`` repeats the last
    frame; ``"loop"`` wraps both tracks), ``num_crops`` / ``crops``, the scan cache and every bad-file rule are those
    of :class:`~mmdiff.modalities.video.folder.VideoFolder`. ``channels``: 1 mixes the sound down to mono, 2 keeps
    stereo (a mono track is duplicated). Files without an audio track: ``no_audio="skip"`` leaves them out with a
    warning naming each (counted as "no audio track" in :meth:`summary`), ``no_audio="silent"`` uses them with zeros.
    A file whose audio track cannot be read is skipped as unreadable.
    """

    def __init__(
        self,
        root: str | Path,
        num_frames: int = 16,
        fps: float = 8.0,
        size: tuple[int, int] | list[int] = (16, 16),
        sample_rate: int = 16000,
        channels: int = 1,
        short_policy: str = "pad",
        labels: str | None = None,
        no_audio: str = "skip",
        scan_cache: bool = True,
        extensions: tuple[str, ...] | list[str] = AV_EXTENSIONS,
    ):
        try:
            _check_args(num_frames, fps, size, short_policy, labels)
        except ValueError as error:  # the same rules; name this class
            raise ValueError(str(error).replace("VideoFolder:", "AudioVideoFolder:", 1)) from None
        if not (int(sample_rate) == sample_rate and sample_rate > 0):
            raise ValueError(
                f"AudioVideoFolder: sample_rate must be a positive whole number of Hz, got {sample_rate!r}"
            )
        if channels not in (1, 2):
            raise ValueError(f"AudioVideoFolder: channels must be 1 (mono) or 2 (stereo), got {channels!r}")
        if no_audio not in NO_AUDIO_POLICIES:
            raise ValueError(f"AudioVideoFolder: no_audio must be one of {NO_AUDIO_POLICIES}, got {no_audio!r}")
        self.num_frames, self.fps, self.size = int(num_frames), float(fps), (int(size[0]), int(size[1]))
        self.clip_seconds = self.num_frames / self.fps  # the time one clip spans
        self.sample_rate, self.channels, self.no_audio = int(sample_rate), int(channels), no_audio
        self.num_samples = round(self.clip_seconds * self.sample_rate)  # S
        self.short_policy, self.labels = short_policy, labels
        scan = scan_folder(
            "AudioVideoFolder",
            "video with sound",
            root,
            extensions,
            self._probe,
            labels,
            header=self._header,
            scan_cache=scan_cache,
        )
        self.root, self.extensions, self.videos = scan.root, scan.extensions, scan.records
        self.scan_report = scan.report  # headers read and taken from the scan cache, skip reasons, time
        self.skipped, self.class_names = scan.skipped, scan.class_names  # skipped: (file, reason) per file left out
        self.num_classes = len(self.class_names)
        self.table = scan.table  # the caption table used, or None

    # --------------------------------------------------------------------------------------------------- scanning

    @staticmethod
    def _header(path: Path) -> dict[str, Any]:
        """What the scan cache keeps of one file: :meth:`VideoFolder._header` plus ``"audio"``, the audio track's
        :func:`~mmdiff.modalities.audio.io.audio_info` (``None``: no audio track); :class:`SkipFile` when the video,
        or an audio track that is there, cannot be read."""
        info = VideoFolder._header(path)
        try:
            info["audio"] = audio_info(path) if has_audio(path) else None
        except AudioDecodeError as error:
            raise SkipFile(f"its audio track cannot be read ({error.reason})", group="audio unreadable") from error
        return info

    def _probe(self, path: Path, info: dict[str, Any] | None = None) -> _AVFile:
        """Header of one file -> an :class:`_AVFile` under this dataset's settings (:meth:`VideoFolder._probe`'s
        rules, and ``no_audio``); raises :class:`SkipFile` when it cannot be used."""
        info = self._header(path) if info is None else info
        video = asdict(super()._probe(path, info))
        audio = info.get("audio")
        if audio is None:
            if self.no_audio == "skip":
                raise SkipFile("no audio track (no_audio='silent' would use it with silent audio)")
            return _AVFile(**video)
        return _AVFile(
            **video, audio_rate=audio["sample_rate"], audio_channels=audio["channels"], audio_codec=audio["codec"]
        )

    def summary(self) -> str:
        """One line: files used, skipped (counted by reason), total hours, formats, frame sizes, source frame rates,
        the audio tracks (codec and rate, with file counts; files used silent), classes, captions, and the scan."""
        hours = sum(v.duration for v in self.videos) / 3600
        sizes = Counter(f"{v.width}x{v.height}" for v in self.videos).most_common()
        rates = Counter(f"{round(v.fps, 3):g}" for v in self.videos).most_common()
        tracks = Counter(f"{v.audio_codec} {v.audio_rate} Hz" for v in self.videos if v.audio_rate).most_common()
        silent = sum(1 for v in self.videos if not v.audio_rate)
        text = f"AudioVideoFolder {self.root}/: {len(self.videos)} files used, {self.scan_report.skipped_text()}"
        text += f", {hours:.2f} h, {format_summary(v.path for v in self.videos)}"
        text += ", " + ", ".join(f"{size} ({n})" for size, n in sizes)
        text += ", fps " + ", ".join(f"{rate} ({n})" for rate, n in rates)
        text += ", audio " + ", ".join(f"{track} ({n})" for track, n in tracks) if tracks else ", no audio tracks"
        text += f", {silent} silent (no audio track)" if silent else ""
        text += f", {self.num_classes} classes" if self.labels else ""
        return f"{text}, {caption_summary(self.captions)}, {self.scan_report.text()}"

    # ------------------------------------------------------------------------------------------------------ items

    def _read(self, video: _AVFile, start: float | None, generator: torch.Generator | None) -> dict[str, Tensor | str]:
        """One item: the clip of ``video`` from ``start`` seconds and the audio of the same span (``start`` is always
        given here: :meth:`VideoFolder._clip_start` draws it)."""
        policy = "pad" if self.short_policy == "skip" else self.short_policy  # as VideoFolder._read
        clip = read_av(
            video.path,
            self.num_frames,
            self.fps,
            self.size,
            self.sample_rate,
            self.channels,
            start=0.0 if start is None else start,
            short_policy=policy,
            missing_audio="silent" if not video.audio_rate else "error",
        )
        item: dict[str, Tensor | str] = {"video": clip["video"], "audio": clip["audio"], "caption": video.caption}
        if self.labels:
            item["label"] = torch.tensor(video.label, dtype=torch.int64)
        return item

    #: Bump when decoding, resizing or resampling changes what a file gives: item keys of earlier versions are then
    #: not reused.
    decode_version = 1

    def _key_settings(self) -> dict[str, Any]:
        """What a clip's pixels and samples depend on besides the file and the start (part of :meth:`item_key`)."""
        return {**super()._key_settings(), "sample_rate": self.sample_rate, "channels": self.channels}

    def item_key(self, index: int, item_seed: int | None = None) -> str | None:
        """A string naming exactly item ``(index, item_seed)`` (:mod:`mmdiff.modalities.item_keys`), as
        :meth:`VideoFolder.item_key` with the audio settings; ``None`` without a seed (the start then comes from
        torch's global RNG and names no fixed clip) or when the file cannot be stat-ed."""
        if item_seed is None:
            return None
        video = self.videos[index]
        start = self._clip_start(video, torch.Generator().manual_seed(int(item_seed)))
        return file_item_key("AudioVideoFolder", self.root, video.path, start, self._key_settings(), None)
