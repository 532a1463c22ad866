"""Cross-modal dependence: how much a joint model's prediction of one track uses the other track.

Sync scores say whether generated sound and picture agree; when they do not, they cannot say why. This measure looks
inside: for real clips ``x0 = (video, audio)`` at noise level ``sigma``, the denoiser predicts the clean clip from
``x0 + sigma * noise``. Give it the same input with one track taken from another clip (same noise): a model that uses
that track predicts the other track worse. The ratio ``error(other clip's track) / error(own track)`` is 1 for a model
that ignores the other track and grows with how much it relies on it (a perfectly coupled model of clips whose sound
follows the picture is far above 1 at high noise, where the sound's own input tells little).

Two settings: joint (nothing known, as in joint generation: both tracks noisy) and given (the other track given clean
as the known-part input, as in video-to-audio and audio-to-video). Errors are the MSE of the predicted clean track in
the model's units, averaged over clips and the listed noise levels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import default_collate

#: The noise levels the ratios average over: where a track's own noisy input still tells much (1) and where it tells
#: little (3, 10), so the other track is the main source.
SIGMAS = (1.0, 3.0, 10.0)

#: ``(track predicted, track swapped, swapped track given clean)`` -> the ratio's name.
RATIOS = {
    ("audio", "video", False): "audio_needs_video",
    ("video", "audio", False): "video_needs_audio",
    ("audio", "video", True): "audio_needs_given_video",
    ("video", "audio", True): "video_needs_given_audio",
}


def cross_modal_dependence(
    pipe: Any, items: Sequence[dict[str, Any]], sigmas: Sequence[float] = SIGMAS, seed: int = 0
) -> dict[str, float]:
    """Ratios for a joint audio-video pipeline ``pipe`` (:func:`mmdiff.load`) on real ``items`` (at least 2):

    * ``audio_needs_video``: audio error with another clip's video / with its own, both tracks noisy (joint);
    * ``video_needs_audio``: the same for the video with another clip's audio;
    * ``audio_needs_given_video``: audio error with another clip's video given clean (video-to-audio) / its own;
    * ``video_needs_given_audio``: the same for the video, the audio given (audio-to-video).

    Each clip is paired with the previous one's track (the first with the last). Noise is fixed by ``seed``.
    """
    if len(items) < 2:
        raise ValueError(f"cross_modal_dependence: needs at least 2 clips to swap tracks between, got {len(items)}")
    adapter, denoiser, device = pipe.adapter, pipe.denoiser, pipe.device
    batch = default_collate(list(items))  # video (B, 3, F, H, W), audio (B, C, S), and what the conditioner reads
    x0, _ = adapter.encode({"video": batch["video"], "audio": batch["audio"]})  # (B, N)
    x0 = x0.to(device)
    cond = {key: value.to(device) for key, value in pipe.conditioner(batch).items()}
    layout = adapter.packing(adapter.frames_of(x0.shape[1]))
    own = layout.unpack(x0)
    shift = torch.roll(torch.arange(len(items)), 1)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noises = [torch.randn(x0.shape, generator=generator).to(device) for _ in sigmas]
    if adapter.noise_prior is not None:  # the noise the model was trained with
        noises = [adapter.noise_prior(noise) for noise in noises]
    ratios = {}
    with torch.no_grad():
        for (target, other, given), name in RATIOS.items():
            mask = (layout.mask({other: 1.0}) if given else torch.zeros(1, x0.shape[1])).to(device)
            errors = []
            for parts in (own, dict(own, **{other: own[other][shift]})):  # its own track, then the previous clip's
                x = layout.pack(parts)
                known = adapter.known_conditions(x, mask)
                total = 0.0
                for sigma, noise in zip(sigmas, noises):
                    s = torch.full((len(items),), float(sigma), device=device)
                    pred = layout.unpack(denoiser(x + sigma * noise, s, **cond, **known))[target]
                    total += float(((pred - own[target]) ** 2).mean())
                errors.append(total / len(sigmas))
            ratios[name] = _ratio(errors[1], errors[0])
    return ratios


def _ratio(swapped: float, own: float) -> float:
    """``swapped / own``; a model exact on its own clips (``own`` 0) relies on the other track infinitely, or not."""
    if own > 0:
        return swapped / own
    return float("inf") if swapped > 0 else 1.0
