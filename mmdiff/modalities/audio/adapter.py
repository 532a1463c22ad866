"""The audio adapter: waveforms <-> normalised log-mel spectrograms, wav/flac files and spectrogram previews.

The core sees ``x (B, channels * n_mels, frames)``: mel bins as channels and time as the axis, so a 1-D U-Net
works on it. ``log(max(mel, floor))`` is mapped affinely to roughly [-1, 1] with fixed constants (``log_center``,
``log_scale``), not data statistics, so a checkpoint decodes the same whatever data it is later used with.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torchaudio
from torch import Tensor

from ...modality import ModalityAdapter
from .vocoder import GriffinLim


class LogMelAdapter(ModalityAdapter):
    """Audio modality adapter (see :class:`mmdiff.modality.ModalityAdapter`).

    Args:
        sample_rate: audio sample rate in Hz.
        n_fft: FFT size of the mel transform (torchaudio ``MelSpectrogram``, magnitude, Slaney scale and norm).
        hop_length: samples between frames.
        n_mels: mel bins (the network's channels).
        f_min: lowest mel frequency in Hz.
        f_max: highest mel frequency in Hz (default: Nyquist).
        channels: 1 (mono) or 2 (stereo: the two channels' mels are stacked along the channel axis).
        duration: default length in seconds of generated clips.
        frame_multiple: frames are cropped to a multiple of this (the U-Net's downsampling factor).
        log_floor: ``x = (log(max(mel, floor)) - center) / scale``: the floor,
        log_center: the center,
        log_scale: and the scale of that normalisation.
        vocoder: mel magnitudes -> waveform; default :class:`GriffinLim` with 32 iterations.
        file_format: ``wav`` or ``flac`` for written clips.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 256,
        n_mels: int = 128,
        f_min: float = 0.0,
        f_max: float | None = None,
        channels: int = 1,
        duration: float = 2.0,
        frame_multiple: int = 8,
        log_floor: float = 1e-5,
        log_center: float = -5.5,
        log_scale: float = 4.5,
        vocoder: Any = None,
        file_format: str = "wav",
    ):
        if channels not in (1, 2):
            raise ValueError(f"audio channels must be 1 or 2, got {channels}")
        if file_format not in ("wav", "flac"):
            raise ValueError(f"file_format must be wav or flac, got {file_format!r}")
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.channels, self.duration = channels, duration
        self.frame_multiple, self.file_format = frame_multiple, file_format
        self.log_floor, self.log_center, self.log_scale = log_floor, log_center, log_scale
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            power=1.0,
            norm="slaney",
            mel_scale="slaney",
        )
        self.vocoder = (
            vocoder if vocoder is not None else GriffinLim(sample_rate, n_fft, hop_length, n_mels, f_min, f_max)
        )

    # ---- tensors -----------------------------------------------------------------------------------------------
    def frames_for(self, seconds: float) -> int:
        """Frames of a clip of ``seconds``, rounded down to ``frame_multiple`` (at least one multiple)."""
        frames = int(seconds * self.sample_rate) // self.hop_length + 1
        return max(self.frame_multiple, frames // self.frame_multiple * self.frame_multiple)

    def waveform_to_mel(self, audio: Tensor) -> Tensor:
        """``(B, channels, samples)`` -> normalised log-mel ``(B, channels * n_mels, frames)``."""
        mel = self.mel.to(audio.device)(audio.float())  # (B, C, n_mels, frames)
        x = (mel.clamp_min(self.log_floor).log() - self.log_center) / self.log_scale
        return x.reshape(x.shape[0], -1, x.shape[-1])

    def mel_to_waveform(self, x: Tensor) -> Tensor:
        """Normalised log-mel ``(B, channels * n_mels, frames)`` -> ``(B, channels, samples)`` through the vocoder."""
        b, _, frames = x.shape
        mel = (x.float() * self.log_scale + self.log_center).exp().reshape(b * self.channels, self.n_mels, frames)
        vocoder = self.vocoder.to(x.device) if isinstance(self.vocoder, torch.nn.Module) else self.vocoder
        return vocoder(mel).reshape(b, self.channels, -1)

    # ---- the adapter protocol ----------------------------------------------------------------------------------
    def encode(self, batch: dict[str, Any], generator: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        audio = batch["audio"]  # (B, channels, samples)
        if audio.ndim != 3 or audio.shape[1] != self.channels:
            raise ValueError(f"audio batch must be (B, {self.channels}, samples), got {tuple(audio.shape)}")
        x = self.waveform_to_mel(audio)
        frames = x.shape[-1] // self.frame_multiple * self.frame_multiple
        return x[..., :frames], {}

    def decode(self, x: Tensor) -> list[Tensor]:
        return list(self.mel_to_waveform(x).cpu())  # each (channels, samples)

    def sample_shape(self, length: float | None = None) -> tuple[int, ...]:
        seconds = self.duration if length is None else float(length)
        if seconds <= 0 or not math.isfinite(seconds):
            raise ValueError(f"length must be a positive number of seconds, got {length}")
        return (self.channels * self.n_mels, self.frames_for(seconds))

    def load_init(self, source: str | Path | Tensor, length: float | None = None) -> Tensor:
        """An input for editing (audio-to-audio, continuation): an audio file or a ``(channels, samples)`` waveform
        -> the per-sample tensor ``(channels * n_mels, frames)``, zero-padded or cropped to ``length`` seconds
        (default: the input's own length)."""
        from .io import load_audio

        audio = load_audio(source, self.sample_rate, self.channels) if isinstance(source, (str, Path)) else source
        audio = torch.as_tensor(audio, dtype=torch.float32).reshape(self.channels, -1)
        seconds = audio.shape[-1] / self.sample_rate if length is None else float(length)
        samples = int(seconds * self.sample_rate)
        audio = torch.nn.functional.pad(audio, (0, max(0, samples - audio.shape[-1])))[:, :samples]
        x = self.waveform_to_mel(audio[None])[0]
        frames = self.frames_for(seconds)
        return torch.nn.functional.pad(x, (0, max(0, frames - x.shape[-1])))[..., :frames]

    def range_mask(self, shape: tuple[int, ...], start: float, end: float) -> Tensor:
        """A mask broadcastable to ``shape = (B, C, frames)`` that is 1 on the frames of ``[start, end)`` seconds."""
        if not 0 <= start < end:
            raise ValueError(f"keep range must satisfy 0 <= start < end (seconds), got ({start}, {end})")
        t = torch.arange(shape[-1]) * self.hop_length / self.sample_rate  # frame times in seconds
        return ((t >= start) & (t < end)).float().reshape(1, 1, -1)

    def write(self, items: list[Tensor], directory: Path, prefix: str = "sample") -> list[Path]:
        from .io import write_clips

        return write_clips(items, directory, self.sample_rate, self.file_format, prefix)

    def preview(self, items: list[Tensor], path: Path, captions: list[str] | None = None) -> Path:
        """A PNG grid of the items' log-mel spectrograms (first channel), each titled by its caption."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        mels = [self.waveform_to_mel(item[None])[0, : self.n_mels] for item in items]
        cols = min(4, len(mels))
        rows = math.ceil(len(mels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.2 * rows), squeeze=False)
        seconds = items[0].shape[-1] / self.sample_rate
        for ax, mel, caption in zip(axes.flat, mels, captions or [""] * len(mels)):
            ax.imshow(
                mel.numpy(),
                origin="lower",
                aspect="auto",
                cmap="magma",
                vmin=-2,
                vmax=1.5,
                extent=(0, seconds, 0, self.n_mels),
            )
            ax.set(xlabel="s", ylabel="mel bin", title=caption)
        for ax in list(axes.flat)[len(mels) :]:
            ax.axis("off")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return path
