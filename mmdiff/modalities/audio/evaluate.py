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

from ..evaluation import PromptAdherence, check_n, real_items, warn_frechet_size
from .attributes import MusicAttributeEstimator, adherence, parse_prompt
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


class MusicPromptAdherence(PromptAdherence):
    """Prompt adherence for the built-in music (see :class:`~mmdiff.modalities.evaluation.PromptAdherence`): prompts
    "a {tempo} {instrument} melody in a {register} register" from each real clip's attributes; instrument, tempo and
    register measured by :class:`~mmdiff.modalities.audio.attributes.MusicAttributeEstimator` (its timbre classifier
    and tempo thresholds fitted on ``fit_n`` real clips), with a row for real clips through log-mel and the vocoder. Meaningful for a synth with register and tempo bands
    (``data.synth.registers`` / ``tempos``, as in ``recipe=audio_music_text``)."""

    media_key = "audio"

    def prompt(self, attributes: dict[str, Any]) -> str:
        return f"a {attributes['tempo']} {attributes['instrument']} melody in a {attributes['register']} register"

    def parse(self, prompt: str) -> dict[str, Any]:
        return parse_prompt(prompt)

    def estimator(self, dataset: Any) -> MusicAttributeEstimator:
        self._rate, self._instruments = dataset.sample_rate, dataset.instruments
        return MusicAttributeEstimator.from_synth(dataset, max(1, self.fit_n // len(dataset.instruments)))

    def estimate(self, estimator: MusicAttributeEstimator, clips: list[Any]) -> list[dict]:
        return estimator.estimate([clip[0].numpy() for clip in clips], self._rate)

    def reference_rows(self, pipe: Any, real: list[Any]) -> dict[str, list[Any]]:
        """Real clips through log-mel and the vocoder: what the estimator reads from the best clips this
        representation can give (generated clips are vocoded too)."""
        adapter = pipe.adapter
        with torch.no_grad():
            return {"real via mel + vocoder": list(adapter.mel_to_waveform(adapter.waveform_to_mel(torch.stack(real))))}

    def score(self, requested: list[dict], measured: list[dict]) -> dict[str, float]:
        return adherence(requested, measured)

    def chance(self, requested: list[dict], measured: list[dict]) -> dict[str, float]:
        chance = {"instrument": 1 / len(self._instruments), "tempo": 1 / 3, "register": 1 / 3}
        return {k: v for k, v in chance.items() if any(k in r for r in requested)}
