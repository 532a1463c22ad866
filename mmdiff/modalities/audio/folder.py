"""A dataset of fixed-length training crops from a folder of audio files, in any format FFmpeg reads.

The folder is scanned once at construction from file headers (cheap: no decoding for most formats); files that
cannot be read, hold no audio stream or no samples are skipped with a warning that names each, so one bad file in a
large folder does not stop a run, and a folder with nothing usable stops it at once with a message saying why.
Items are random crops of ``duration`` seconds, drawn from a per-item seed when the trainer's sampler gives one, so
that a resumed run sees the same crops. Evaluation instead cuts each file into non-overlapping crops
(:meth:`AudioFolder.num_crops`, :meth:`AudioFolder.crops`), so that a few long files give many distinct clips.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..folders import SkipFile, caption_summary, format_summary, scan_folder
from ..item_keys import file_item_key
from .io import AudioDecodeError, audio_info, decoded_length, load_audio

__all__ = ["AUDIO_EXTENSIONS", "AudioFolder"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif")
SHORT_POLICIES = ("pad", "loop", "skip")


@dataclass(frozen=True)
class _Clip:
    """One usable file: where it is, what its header says, its class index (-1 when unlabeled), its caption."""

    path: Path
    sample_rate: int
    duration: float
    label: int = -1
    caption: str = ""


class AudioFolder(Dataset):
    """Random ``duration``-second crops of the audio files under ``root`` (searched recursively).

    Items are ``{"audio": (channels, round(duration * sample_rate)) float32, "caption": str}``, plus ``"label"``
    (int64, 0-dim) when ``labels="subfolder"``. The caption comes from a ``metadata.csv`` / ``metadata.jsonl`` at the
    root or a ``<stem>.txt`` beside the file (``""`` when it has none; rules in :mod:`mmdiff.modalities.folders`);
    ``captions`` lists them per file. With ``labels="subfolder"``: the class of a file is its first sub-folder under
    ``root``; class names are sorted and numbered from 0 (``class_names``, ``num_classes``; 0 when unlabeled). Keys
    are an index or ``(index, item_seed)``: with a seed the crop start comes from
    ``torch.Generator().manual_seed(item_seed)`` (deterministic), without one from torch's global RNG.

    Clips shorter than ``duration``: ``short_policy="pad"`` zero-pads them at the end, ``"loop"`` repeats them,
    ``"skip"`` leaves them out (judged from the header duration). ``cache=True`` keeps decoded, resampled waveforms in
    memory after their first load (per process: each DataLoader worker fills its own cache). The headers read by
    the scan are kept between runs in the scan cache (:mod:`mmdiff.modalities.folders`); ``scan_cache=False`` reads
    every header again and writes nothing.
    """

    def __init__(
        self,
        root: str | Path,
        sample_rate: int = 22050,
        channels: int = 1,
        duration: float = 4.0,
        short_policy: str = "pad",
        extensions: tuple[str, ...] | list[str] = AUDIO_EXTENSIONS,
        labels: str | None = None,
        cache: bool = False,
        scan_cache: bool = True,
    ):
        _check_args(sample_rate, channels, duration, short_policy, labels)
        self.sample_rate, self.channels, self.duration = int(sample_rate), channels, float(duration)
        self.num_samples = round(self.duration * self.sample_rate)  # crop length T
        self.short_policy, self.labels, self.cache = short_policy, labels, cache
        self._cache: dict[int, Tensor] = {}
        self._lengths: dict[int, int] = {}  # file -> samples of its full decode, where this process read it whole
        scan = scan_folder(
            "AudioFolder", "audio", root, extensions, self._probe, labels, header=self._header, scan_cache=scan_cache
        )
        self.root, self.extensions, self.clips = scan.root, scan.extensions, scan.records
        self.scan_report = scan.report  # headers read and taken from the scan cache, skip reasons, time
        self.skipped, self.class_names = scan.skipped, scan.class_names  # skipped: (file, reason) per file left out
        self.num_classes = len(self.class_names)
        self.table = scan.table  # the caption table used, or None

    @property
    def captions(self) -> list[str]:
        """The caption of each file, in item order (``""``: the file has none and trains with the empty caption)."""
        return [clip.caption for clip in self.clips]

    # --------------------------------------------------------------------------------------------------- scanning

    @staticmethod
    def _header(path: Path) -> dict[str, Any]:
        """What the scan cache keeps of one file: :func:`audio_info` (JSON-able); :class:`SkipFile` when unreadable."""
        try:
            return audio_info(path)
        except AudioDecodeError as error:
            raise SkipFile(error.reason) from error

    def _probe(self, path: Path, info: dict[str, Any] | None = None) -> _Clip:
        """Header of one file (``info``: its :meth:`_header`, read when not given) -> a :class:`_Clip` under this
        dataset's settings; raises :class:`SkipFile` when it cannot be used."""
        info = self._header(path) if info is None else info
        if info["duration"] <= 0:
            raise SkipFile("it holds no samples")
        if self.short_policy == "skip" and info["duration"] < self.duration:
            reason = f"{info['duration']:.2f} s is shorter than duration={self.duration:g} s"
            raise SkipFile(reason, warn=False, group=f"shorter than {self.duration:g} s")
        return _Clip(path, info["sample_rate"], info["duration"])

    def summary(self) -> str:
        """One line: files used, skipped (counted by reason), total hours, formats and native sample rates with their
        file counts, classes, captions, and the scan (headers read, taken from the scan cache, seconds)."""
        rates = Counter(c.sample_rate for c in self.clips)
        hours = sum(c.duration for c in self.clips) / 3600
        rate_text = ", ".join(f"{rate} ({n})" for rate, n in sorted(rates.items()))
        text = f"AudioFolder {self.root}/: {len(self.clips)} files used, {self.scan_report.skipped_text()}"
        text += f", {hours:.2f} h, {format_summary(c.path for c in self.clips)}, sample rates {rate_text}"
        text += f", {self.num_classes} classes" if self.labels else ""
        return f"{text}, {caption_summary(self.captions)}, {self.scan_report.text()}"

    # ------------------------------------------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self.clips)

    def _waveform(self, index: int) -> Tensor:
        """The whole file ``(channels, T_file)`` at ``sample_rate``, from the cache when enabled."""
        if index in self._cache:
            return self._cache[index]
        waveform = load_audio(self.clips[index].path, self.sample_rate, self.channels)
        if self.cache:
            self._cache[index] = waveform
        return waveform

    def _crop_start(self, length: int, generator: torch.Generator | None) -> int:
        """The first sample of the crop of a ``length``-sample decode: ``randint(0, length - n + 1)`` from
        ``generator``; 0, with nothing drawn, when the decode is no longer than a crop (padded or looped)."""
        n = self.num_samples
        return int(torch.randint(0, length - n + 1, (1,), generator=generator)) if length > n else 0

    def _fit(self, waveform: Tensor, generator: torch.Generator | None) -> Tensor:
        """``(C, T_file) -> (C, num_samples)``: a random crop, or padding/looping for a short clip."""
        length, n = waveform.shape[1], self.num_samples
        if length > n:
            start = self._crop_start(length, generator)
            return waveform[:, start : start + n].clone()
        if self.short_policy == "loop":
            return waveform.repeat(1, -(-n // length))[:, :n]  # ceil(n / length) copies, cut to n
        return torch.nn.functional.pad(waveform, (0, n - length))  # "pad", and "skip" clips whose header overstated

    def _item(self, index: int, audio: Tensor) -> dict[str, Tensor | str]:
        item: dict[str, Tensor | str] = {"audio": audio, "caption": self.clips[index].caption}  # audio: (C, T)
        if self.labels:
            item["label"] = torch.tensor(self.clips[index].label, dtype=torch.int64)
        return item

    def _length(self, index: int) -> int:
        """Samples a full decode and resample of file ``index`` gives, from its header duration (no decoding):
        exact where the header is (wav, flac, mp3 with a Xing/LAME header, ogg/opus, m4a), see
        :func:`~mmdiff.modalities.audio.io.decoded_length`."""
        clip = self.clips[index]
        return decoded_length(clip.duration, clip.sample_rate, self.sample_rate)

    def _window(self, index: int, start: int, stop: int) -> Tensor:
        """``(C, stop - start)``: samples ``[start, stop)`` of the full decode of file ``index``, decoded from a seek;
        fewer when the file ends before ``stop`` (its header overstated its length)."""
        rate, path = self.sample_rate, self.clips[index].path
        return load_audio(path, rate, self.channels, offset=start / rate, duration=(stop - start) / rate)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor | str]:
        """The crop of item ``key``. Its start is drawn as it always was, ``randint(0, length - n + 1)`` from the
        item's generator, with ``length`` the full decode's length, now known from the header so that only the crop
        is decoded (:meth:`_window`). Short files, cached files and files whose decode falls short of their header
        are read whole, the draw repeated on the real length (the crop a whole-file read gives)."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        index = range(len(self.clips))[index]  # IndexError when out of range; one cache entry per file
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        length, n = self._length(index), self.num_samples
        if self.cache or index in self._cache or length <= n:
            return self._item(index, self._fit(self._whole(index), generator))
        state = (generator or torch.default_generator).get_state()  # to repeat the draw on a whole-file read
        start = self._crop_start(length, generator)
        audio = self._window(index, start, start + n)  # (C, n)
        if audio.shape[1] < n:
            (generator or torch.default_generator).set_state(state)
            audio = self._fit(self._whole(index), generator)
        return self._item(index, audio)

    def _whole(self, index: int) -> Tensor:
        """:meth:`_waveform`, remembering its length: the crop of a whole-file read is drawn on it, and
        :meth:`item_key` must name that crop."""
        waveform = self._waveform(index)
        self._lengths[index] = waveform.shape[1]
        return waveform

    #: Bump when decoding or resampling changes the samples a file gives: item keys (and the latents cached by them)
    #: of earlier versions are then not reused.
    decode_version = 1

    def item_key(self, index: int, item_seed: int) -> str | None:
        """A string naming exactly the audio of item ``(index, item_seed)`` (:mod:`mmdiff.modalities.item_keys`):
        the file (path under the root, size, ``mtime_ns``: touching or replacing it changes the key), the crop
        ``[start, start + n)`` the item seed draws (:meth:`_crop_start`, as :meth:`__getitem__` draws it) and the
        decoding settings. The crop is drawn on the header's length, or on the decode's where this process read
        the file whole (``cache=True``, short files, a header that overstated): call it after ``self[index,
        item_seed]``, as the trainer does. ``None`` when the file cannot be stat-ed."""
        index = range(len(self.clips))[index]
        length = self._lengths.get(index, self._length(index))
        start = self._crop_start(length, torch.Generator().manual_seed(int(item_seed)))
        return file_item_key("AudioFolder", self.root, self.clips[index].path, start, self._key_settings(), None)

    def _key_settings(self) -> dict[str, Any]:
        """What a crop's samples depend on besides the file and the start (part of :meth:`item_key`)."""
        return {
            "version": self.decode_version,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "num_samples": self.num_samples,
            "short_policy": self.short_policy,
        }

    # ------------------------------------------------------------------------------------------- evaluation crops

    def num_crops(self, index: int) -> int:
        """How many non-overlapping ``duration``-second crops file ``index`` holds by its header duration; at least
        1 (a shorter file is one crop, padded or looped by ``short_policy``)."""
        return max(1, int(self.clips[index].duration / self.duration + 1e-6))  # 1e-6: a header's 3.9999996 s is 2 x 2 s

    def crops(self, index: int, positions: Sequence[int]) -> list[dict[str, Tensor | str]]:
        """Items for crops ``positions`` of file ``index``: crop ``k`` starts at ``k * duration`` seconds (the last
        whole crop when the file is shorter than its header said). Each run of adjacent positions is decoded as one
        window from a seek, so a few crops of a long file do not decode all of it; a file shorter than one crop, or
        one whose decode falls short of its header, is read whole."""
        index = range(len(self.clips))[index]
        length, n = self._length(index), self.num_samples
        if self.cache or index in self._cache or length <= n:
            return self._crops_from(index, self._waveform(index), positions)
        starts = {int(k): min(int(k) * n, length - n) for k in positions}  # crop position -> first sample
        windows: dict[int, tuple[int, Tensor]] = {}  # crop position -> (window start, (C, window samples))
        run: list[int] = []
        for k in [*sorted(starts, key=starts.get), None]:  # runs of crops that touch or overlap
            if run and (k is None or starts[k] > starts[run[-1]] + n):
                lo, hi = starts[run[0]], starts[run[-1]] + n
                window = self._window(index, lo, hi)  # (C, hi - lo)
                if window.shape[1] < hi - lo:  # the file is shorter than its header said
                    return self._crops_from(index, self._waveform(index), positions)
                windows.update((j, (lo, window)) for j in run)
                run = []
            if k is not None:
                run.append(k)
        items = []
        for k in positions:
            lo, window = windows[int(k)]
            items.append(self._item(index, window[:, starts[int(k)] - lo : starts[int(k)] - lo + n].clone()))
        return items

    def _crops_from(self, index: int, waveform: Tensor, positions: Sequence[int]) -> list[dict[str, Tensor | str]]:
        """:meth:`crops` from the whole file ``waveform`` ``(C, T_file)``: short files padded or looped."""
        length, n = waveform.shape[1], self.num_samples
        items = []
        for k in positions:
            start = min(int(k) * n, max(0, length - n))
            items.append(self._item(index, self._fit(waveform[:, start : start + n], None)))  # short: pad/loop
        return items

    def __repr__(self) -> str:
        return self.summary()


def _check_args(sample_rate: int, channels: int, duration: float, short_policy: str, labels: str | None) -> None:
    """Clear errors for impossible settings, before any file is touched."""
    if not sample_rate > 0:
        raise ValueError(f"AudioFolder: sample_rate must be a positive number of Hz, got {sample_rate}")
    if channels not in (1, 2):
        raise ValueError(f"AudioFolder: channels must be 1 (mono) or 2 (stereo), got {channels}")
    if not duration > 0 or round(duration * sample_rate) < 1:
        raise ValueError(f"AudioFolder: duration must be a positive number of seconds, got {duration}")
    if short_policy not in SHORT_POLICIES:
        raise ValueError(f"AudioFolder: short_policy must be one of {SHORT_POLICIES}, got {short_policy!r}")
    if labels not in (None, "subfolder"):
        raise ValueError(f"AudioFolder: labels must be None or 'subfolder', got {labels!r}")
