"""Does the generated video move like the data? Generated clips against real ones, with held-out real clips as floor.

Each row has the temporal-change statistics of :func:`~mmdiff.modalities.video.metrics.temporal_consistency_report`
(ratio ~1 is good, ~0 frozen, >> 1 flicker) and the Fréchet distance of handcrafted clip features to ``n`` real
clips (:func:`~mmdiff.modalities.video.metrics.video_features`) and whether objects stay whole
(:func:`~mmdiff.modalities.video.metrics.object_stability`): the keys of
:func:`~mmdiff.modalities.video.metrics.video_report`.
"""

from __future__ import annotations

from typing import Any

from ..evaluation import PromptAdherence, check_n, real_items, warn_frechet_size
from .attributes import VideoAttributeEstimator, adherence, chance, parse_prompt
from .metrics import FEATURE_NAMES, video_features, video_report


class VideoEvaluator:
    """Motion and Fréchet statistics of ``n`` generated clips against ``n`` real ones (``"generated"``), and of ``n``
    other real clips (``"real, held out"``: what a perfect model would score). Clips are generated with as many frames
    as the real ones. ``n``: clips per set when the call gives none."""

    def __init__(self, n: int = 64):
        self.n = check_n(n, "VideoEvaluator")

    def __call__(
        self, pipe: Any, dataset: Any, n: int | None = None, seed: int = 0, progress: bool = False, **options: Any
    ) -> dict[str, dict[str, float]]:
        n = check_n(self.n if n is None else n, "VideoEvaluator")
        reference, held_out = real_items(dataset, n, "VideoEvaluator", "clips")
        real = [item["video"] for item in reference]  # n x (3, F, H, W)
        options.setdefault("length", real[0].shape[1])
        rows = {
            "generated": pipe.generate(n, seed=seed, progress=progress, **options),
            "real, held out": [item["video"] for item in held_out],
        }
        warn_frechet_size(n, len(FEATURE_NAMES), "VideoEvaluator")
        reference_features = video_features(real)  # (n, 17)
        return {name: video_report(clips, real, reference_features, warn=False) for name, clips in rows.items()}


class VideoPromptAdherence(PromptAdherence):
    """Prompt adherence for the moving shapes (see :class:`~mmdiff.modalities.evaluation.PromptAdherence`): prompts
    "a {colour} {shape} moving {direction}" from each real clip's first object; colour, shape and direction measured
    by :class:`~mmdiff.modalities.video.attributes.VideoAttributeEstimator` (its shape rule fitted on real clips)."""

    media_key = "video"

    def prompt(self, attributes: dict[str, Any]) -> str:
        colour, direction = attributes["colours"][0], attributes["directions"][0].replace("-", " and ")
        return " ".join(["a", *([colour] if colour else []), attributes["shape"], "moving", direction])

    def parse(self, prompt: str) -> dict[str, Any]:
        return parse_prompt(prompt)

    def estimator(self, dataset: Any) -> VideoAttributeEstimator:
        return VideoAttributeEstimator.from_synth(dataset, self.fit_n)

    def score(self, requested: list[dict], measured: list[dict]) -> dict[str, float]:
        return adherence(requested, measured)

    def chance(self, requested: list[dict], measured: list[dict]) -> dict[str, float]:
        return chance(requested, measured)
