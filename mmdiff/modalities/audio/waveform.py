"""The waveform adapter: audio as its samples, ``(B, channels, samples)``, for waveform autoencoders.

A waveform autoencoder (Stable Audio's Oobleck, through :class:`mmdiff.latent.diffusers_codec.DiffusersCodec`)
takes the raw waveform, not a spectrogram; the latent adapter composes it with this adapter as it composes a
spectrogram autoencoder with :class:`~.adapter.LogMelAdapter`. Pure waveform diffusion (a 1-D U-Net with
``in_channels = channels`` on the samples) works with it too, at a heavy cost in length. Previews are log-mel
spectrograms drawn by a :class:`~.adapter.LogMelAdapter` held inside (composition, one drawing code).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...modality import ModalityAdapter
from .adapter import LogMelAdapter


class WaveformAdapter(ModalityAdapter):
    """Audio modality adapter whose tensor is the waveform itself (see :class:`mmdiff.modality.ModalityAdapter`).

    Args:
        sample_rate: audio sample rate in Hz (the autoencoder's: 44100 for Stable Audio Open's Oobleck).
        channels: 1 (mono) or 2 (stereo).
        duration: default length in seconds of generated clips.
        sample_multiple: samples are cropped to a multiple of this: the codec's hop (``prod(downsampling_ratios)``,
            2048 for Oobleck) times whatever the network on the latents needs (its downsampling factor).
        file_format: ``wav`` or ``flac`` for written clips.
        preview_n_fft, preview_hop_length, preview_n_mels: the log-mel spectrogram of previews.
    """

    def __init__(
        self,
        sample_rate: int = 44100,
        channels: int = 1,
        duration: float = 2.0,
        sample_multiple: int = 2048,
        file_format: str = "wav",
        preview_n_fft: int = 1024,
        preview_hop_length: int = 256,
        preview_n_mels: int = 128,
    ):
        if channels not in (1, 2):
            raise ValueError(f"audio channels must be 1 or 2, got {channels}")
        if file_format not in ("wav", "flac"):
            raise ValueError(f"file_format must be wav or flac, got {file_format!r}")
        if sample_multiple < 1:
            raise ValueError(f"sample_multiple must be a positive number of samples, got {sample_multiple}")
        self.sample_rate, self.channels, self.duration = sample_rate, channels, duration
        self.sample_multiple, self.file_format = sample_multiple, file_format
        # Only draws previews (waveform -> log-mel picture); its Griffin-Lim vocoder is never run.
        self.spectrogram = LogMelAdapter(
            sample_rate=sample_rate,
            n_fft=preview_n_fft,
            hop_length=preview_hop_length,
            n_mels=preview_n_mels,
            channels=channels,
            duration=duration,
        )

    def samples_for(self, seconds: float) -> int:
        """Samples of a clip of ``seconds``, rounded down to ``sample_multiple`` (at least one multiple)."""
        samples = round(seconds * self.sample_rate)
        return max(self.sample_multiple, samples // self.sample_multiple * self.sample_multiple)

    # ---- the adapter protocol ----------------------------------------------------------------------------------
    def encode(self, batch: dict[str, Any], generator: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        audio = batch["audio"]  # (B, channels, samples)
        if audio.ndim != 3 or audio.shape[1] != self.channels:
            raise ValueError(f"audio batch must be (B, {self.channels}, samples), got {tuple(audio.shape)}")
        samples = audio.shape[-1] // self.sample_multiple * self.sample_multiple
        if samples == 0:
            raise ValueError(
                f"audio clips of {audio.shape[-1]} samples are shorter than sample_multiple={self.sample_multiple}"
            )
        return audio[..., :samples].float(), {}

    def decode(self, x: Tensor) -> list[Tensor]:
        return list(x.float().clamp(-1, 1).cpu())  # each (channels, samples)

    def sample_shape(self, length: float | None = None) -> tuple[int, ...]:
        seconds = self.duration if length is None else float(length)
        if seconds <= 0 or not math.isfinite(seconds):
            raise ValueError(f"length must be a positive number of seconds, got {length}")
        return (self.channels, self.samples_for(seconds))

    def load_init(self, source: str | Path | Tensor, length: float | None = None) -> Tensor:
        """An input for editing: an audio file or a ``(channels, samples)`` waveform -> ``(channels, samples)``,
        zero-padded or cropped to ``length`` seconds (default: the input's own length), rounded down to
        ``sample_multiple``."""
        from .io import load_audio

        audio = load_audio(source, self.sample_rate, self.channels) if isinstance(source, (str, Path)) else source
        audio = torch.as_tensor(audio, dtype=torch.float32).reshape(self.channels, -1)
        seconds = audio.shape[-1] / self.sample_rate if length is None else float(length)
        samples = self.samples_for(seconds)
        return torch.nn.functional.pad(audio, (0, max(0, samples - audio.shape[-1])))[:, :samples]

    def range_mask(self, shape: tuple[int, ...], start: float, end: float) -> Tensor:
        """A mask broadcastable to ``shape = (B, C, samples)`` that is 1 on the samples of ``[start, end)`` s."""
        if not 0 <= start < end:
            raise ValueError(f"keep range must satisfy 0 <= start < end (seconds), got ({start}, {end})")
        t = torch.arange(shape[-1], dtype=torch.float64) / self.sample_rate  # sample times in s (exact at k/rate)
        return ((t >= start) & (t < end)).float().reshape(1, 1, -1)

    def write(self, items: list[Tensor], directory: Path, prefix: str = "sample") -> list[Path]:
        from .io import write_clips

        return write_clips(items, directory, self.sample_rate, self.file_format, prefix)

    def preview(self, items: list[Tensor], path: Path, captions: list[str] | None = None) -> Path:
        """A PNG grid of the items' log-mel spectrograms (first channel), each titled by its caption."""
        return self.spectrogram.preview(items, path, captions)
