"""Vocoders: mel magnitudes back to waveforms.

The interface is one call, ``vocoder(mel (B, n_mels, frames)) -> waveform (B, samples)``, so a trained neural vocoder
can replace the default :class:`GriffinLim` by pointing ``adapter.vocoder._target_`` at it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torchaudio
from torch import Tensor, nn


@runtime_checkable
class Vocoder(Protocol):
    def __call__(self, mel: Tensor) -> Tensor: ...


class GriffinLim(nn.Module):
    """Mel magnitudes -> linear magnitudes (least squares through the pseudo-inverse of the mel filterbank, clipped
    at zero, as torchaudio's ``InverseMelScale`` does) -> phase by torchaudio's Griffin-Lim (Griffin & Lim 1984; the
    fast variant with momentum, Perraudin et al. 2013).

    Its settings must match the mel transform that made the spectrogram; :class:`LogMelAdapter` builds it so.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        n_mels: int,
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 1.0,
        n_iter: int = 32,
        momentum: float = 0.99,
        mel_scale: str = "slaney",
        norm: str | None = "slaney",
    ):
        super().__init__()
        n_stft = n_fft // 2 + 1
        fb = torchaudio.functional.melscale_fbanks(
            n_stft, f_min, f_max or sample_rate / 2, n_mels, sample_rate, norm=norm, mel_scale=mel_scale
        )  # (n_stft, n_mels)
        self.register_buffer("pinv", torch.linalg.pinv(fb.T), persistent=False)  # (n_stft, n_mels)
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=n_fft, hop_length=hop_length, power=power, n_iter=n_iter, momentum=momentum
        )
        self.power = power

    def forward(self, mel: Tensor) -> Tensor:  # (B, n_mels, frames) -> (B, samples)
        linear = (self.pinv @ mel.float().clamp_min(0)).clamp_min(0)  # (B, n_stft, frames), least squares + clip
        return self.griffin_lim(linear)
