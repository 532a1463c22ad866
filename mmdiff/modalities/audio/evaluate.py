"""Is the generated music music? Generated clips against real ones, with two reference rows to read them by.

* ``generated``: ``n`` clips from the model (labels cycling through the classes);
* ``real, held out``: ``n`` other real clips: the score a perfect model would get (the sampling floor);
* ``real via mel + vocoder``: real clips through the log-mel representation and the vocoder: the best any model
  of this representation can do.

Each row has pyin's ``voiced_share``, a pitch measure, and the Fréchet distance of handcrafted features to ``n`` real
clips (:mod:`mmdiff.modalities.audio.metrics`). The pitch measure follows what is known about the data: when it states
its scale (the built-in :class:`~mmdiff.modalities.audio.synth.MusicSynth`, or ``scale=`` here), ``on_scale_share``,
the share of pitched frames on that scale; otherwise (a folder of the user's music) ``pitch_class_distance``, the
total variation distance between the row's pitch-class profile and the real clips' (0: the same pitch classes equally
often), since scoring an unknown folder against C major pentatonic would measure nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from ..evaluation import check_n, real_items, warn_frechet_size
from .metrics import (
    FEATURE_NAMES,
    audio_features,
    frechet_distance,
    on_scale_share,
    pitch_class_profile,
    profile_distance,
    voiced_pitches,
)

log = logging.getLogger("mmdiff.eval")


class MusicEvaluator:
    """The three rows above for a pipeline ``pipe`` (from :func:`mmdiff.load`) and its training ``dataset``.

    ``n``: clips per set when the call gives none. ``scale``: the scale to score pitches against (a name of
    :data:`~mmdiff.modalities.audio.synth.SCALES` or pitch classes); ``None`` takes the dataset's ``scale`` when it
    has one, else compares pitch-class profiles. ``vocoder_row=False`` leaves out the mel + vocoder row.
    """

    def __init__(self, n: int = 64, scale: str | Sequence[int] | None = None, vocoder_row: bool = True):
        self.n, self.scale, self.vocoder_row = check_n(n, "MusicEvaluator"), scale, vocoder_row

    def __call__(
        self, pipe: Any, dataset: Any, n: int | None = None, seed: int = 0, progress: bool = False, **options: Any
    ) -> dict[str, dict[str, float]]:
        n = check_n(self.n if n is None else n, "MusicEvaluator")
        reference, held_out = real_items(dataset, n, "MusicEvaluator", "clips")
        real = torch.stack([item["audio"] for item in reference])  # (n, channels, samples)
        rows = {
            "generated": torch.stack(pipe.generate(n, seed=seed, progress=progress, **options)),
            "real, held out": torch.stack([item["audio"] for item in held_out]),
        }
        adapter, sample_rate = pipe.adapter, pipe.adapter.sample_rate
        if self.vocoder_row:
            with torch.no_grad():
                rows["real via mel + vocoder"] = adapter.mel_to_waveform(adapter.waveform_to_mel(real))
        length = min(x.shape[-1] for x in (real, *rows.values()))  # generated clips may differ by a hop
        mono = {name: [clip[0, :length].numpy() for clip in clips] for name, clips in rows.items()}
        real_mono = [clip[0, :length].numpy() for clip in real]

        scale = self.scale if self.scale is not None else getattr(dataset, "scale", None)
        reference_profile = None
        if scale is None:
            log.warning(
                "MusicEvaluator: %s states no scale, so on_scale_share is left out; pitch_class_distance compares "
                "each row's pitch classes with the real clips' (0: the same profile); train with "
                "evaluator.scale=NAME to score a scale",
                type(dataset).__name__,
            )
            reference_profile = pitch_class_profile(voiced_pitches(real_mono, sample_rate)[0])
        warn_frechet_size(n, len(FEATURE_NAMES), "MusicEvaluator")
        reference_features = audio_features(real_mono, sample_rate)  # (n, 41)
        report = {}
        for name, clips in mono.items():
            f0, frames = voiced_pitches(clips, sample_rate)  # (voiced_frames,)
            row = {"voiced_share": len(f0) / frames}
            if scale is not None:
                row["on_scale_share"] = on_scale_share(f0, scale)
            else:
                row["pitch_class_distance"] = profile_distance(pitch_class_profile(f0), reference_profile)
            features = audio_features(clips, sample_rate)
            row["frechet_distance"] = frechet_distance(features, reference_features, warn=False)
            report[name] = row
        return report
