"""How much the representation loses: audio -> log-mel -> vocoder -> audio.

Whatever a model learns, its clips can sound no better than this round trip, so it is measured and reported.
Both figures compare STFT magnitudes (phase-blind, since Griffin-Lim recovers a different but valid phase):

* log-spectral distance (dB): RMS over bins of ``20 log10`` magnitude ratios, averaged over frames, with both
  spectra floored 60 dB below the clip's peak (so inaudible bins do not dominate);
* spectral convergence: ``||S - S_hat||_F / ||S||_F`` (Arik et al. 2019).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _magnitudes(audio: Tensor, n_fft: int, hop: int) -> Tensor:
    window = torch.hann_window(n_fft, device=audio.device)
    return torch.stft(audio, n_fft, hop, window=window, return_complex=True).abs()  # (B, bins, frames)


def roundtrip_quality(adapter, audio: Tensor) -> dict[str, float]:
    """Encode and decode ``audio (B, channels, samples)`` with ``adapter``; return the two distances above."""
    with torch.no_grad():
        x = adapter.waveform_to_mel(audio)
        recon = adapter.mel_to_waveform(x)
    n = min(audio.shape[-1], recon.shape[-1])
    ref, out = audio[..., :n].reshape(-1, n).float(), recon[..., :n].reshape(-1, n).float()
    s, s_hat = _magnitudes(ref, adapter.n_fft, adapter.hop_length), _magnitudes(out, adapter.n_fft, adapter.hop_length)
    floor = 1e-3 * s.amax(dim=(1, 2), keepdim=True)  # -60 dB below each clip's peak
    lsd = ((20 * torch.log10(s.maximum(floor) / s_hat.maximum(floor))) ** 2).mean(dim=1).sqrt().mean()
    convergence = torch.linalg.norm(s - s_hat, dim=(1, 2)) / torch.linalg.norm(s, dim=(1, 2))
    return {"log_spectral_distance_db": float(lsd), "spectral_convergence": float(convergence.mean())}
