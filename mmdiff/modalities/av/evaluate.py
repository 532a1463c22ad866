"""Is the generated soundtrack in sync with the generated picture? Audio onsets against visible bounces (issue 16).

Rows of :class:`AVSyncEvaluator`, each with the keys of :func:`~mmdiff.modalities.av.sync.sync_report` (the share of
onsets within one frame of a bounce, the share of bounces with an onset that near, the counts) and ``sync_vs_chance``:

* ``generated``: ``n`` clips from the joint model, sound and picture both generated; this row also has the video's
  temporal-change statistics against the real clips
  (:func:`~mmdiff.modalities.video.metrics.temporal_consistency_report`: ratio ~1 good, ~0 frozen, >> 1 flicker);
* ``real``: ``n`` real clips, what a perfect model would score (the detectors' own ceiling on this data);
* ``real, mismatched (chance)``: the same real clips, each with the next clip's sound: onsets that have nothing to do
  with the picture, the chance level that ``sync_vs_chance`` divides by. Pooled over every shift (the next clip's
  sound, the one after, ...: :func:`~mmdiff.modalities.av.sync.chance_scores`), the same expectation as the next
  clip alone but steady at ``n = 32``, where one pairing has only a handful of chance hits;
* ``video-to-audio``: sound generated for ``n`` other (held-out) real videos, scored against those videos' bounces;
* ``audio-to-video``: video generated for the same held-out clips' sound, its bounces scored against that sound's
  onsets.

The issue's goal reads off ``sync_vs_chance``: generated ``onsets_near_bounce`` at least 3x the chance row's (NaN
when the chance row has no onset near a bounce at all, which leaves nothing to divide by).
"""

from __future__ import annotations

from typing import Any

from ..evaluation import check_n, real_items
from ..video.metrics import temporal_consistency_report
from .sync import chance_scores, detect, sync_report, sync_scores

CHANCE_ROW = "real, mismatched (chance)"


class AVSyncEvaluator:
    """The rows above for a joint audio-video pipeline ``pipe`` (from :func:`mmdiff.load`) and its ``dataset``.

    ``n``: clips per set when the call gives none (``2 n`` real clips are drawn: ``n`` scored, ``n`` held out for
    video-to-audio and audio-to-video). ``video_to_audio=False`` / ``audio_to_video=False`` leave out those rows (a
    model trained without that known track). The frame rate and sample rate come from ``pipe.adapter`` (``fps``, ``sample_rate``); the sync
    tolerance is one frame.
    """

    def __init__(self, n: int = 32, video_to_audio: bool = True, audio_to_video: bool = True):
        self.n, self.video_to_audio = check_n(n, "AVSyncEvaluator"), bool(video_to_audio)
        self.audio_to_video = bool(audio_to_video)

    def __call__(
        self, pipe: Any, dataset: Any, n: int | None = None, seed: int = 0, progress: bool = False, **options: Any
    ) -> dict[str, dict[str, float]]:
        n = check_n(self.n if n is None else n, "AVSyncEvaluator")
        fps, sample_rate = _rates(pipe)
        reference, held_out = real_items(dataset, n, "AVSyncEvaluator", "clips")
        for i, item in enumerate(reference + held_out):
            if "video" not in item or "audio" not in item:
                raise ValueError(
                    f"AVSyncEvaluator: real item {i} has {sorted(item)}; need 'video' and 'audio' (audio-video data)"
                )
        real_videos = [item["video"] for item in reference]  # n x (3, F, H, W)
        generate_options = {"length": real_videos[0].shape[1] / fps, **options}  # seconds, as long as the real clips
        generated = pipe.generate(n, seed=seed, progress=progress, **generate_options)
        tolerance = 1.0 / fps  # one frame
        onsets, bounces = detect(reference, fps, sample_rate)  # the real clips' detections, for two rows
        report = {
            "generated": {
                **sync_report(generated, fps, sample_rate, tolerance),
                **temporal_consistency_report([item["video"] for item in generated], real_videos),
            },
            "real": sync_scores(onsets, bounces, tolerance),
            CHANCE_ROW: chance_scores(onsets, bounces, tolerance),
        }
        if self.video_to_audio:
            videos = [item["video"] for item in held_out]  # n x (3, F, H, W) in [0, 1]
            # The given videos fix the length: a length option is for the joint row only.
            v2a_options = {key: value for key, value in options.items() if key != "length"}
            sound = pipe.generate(n, seed=seed, progress=progress, video=videos, **v2a_options)
            paired = [{"video": video, "audio": item["audio"]} for video, item in zip(videos, sound)]
            report["video-to-audio"] = sync_report(paired, fps, sample_rate, tolerance)
        if self.audio_to_video:
            sounds = [item["audio"] for item in held_out]  # n x (C, S)
            pictures = pipe.generate(n, seed=seed, progress=progress, audio=sounds, **generate_options)
            paired = [{"video": item["video"], "audio": sound} for item, sound in zip(pictures, sounds)]
            report["audio-to-video"] = sync_report(paired, fps, sample_rate, tolerance)
        chance = report[CHANCE_ROW]["onsets_near_bounce"]
        for row in report.values():
            row["sync_vs_chance"] = row["onsets_near_bounce"] / chance if chance > 0 else float("nan")
        return report


def _rates(pipe: Any) -> tuple[float, int]:
    """``(fps, sample_rate)`` of the pipeline's adapter, or a one-line error naming what is missing."""
    adapter = getattr(pipe, "adapter", None)
    fps, sample_rate = getattr(adapter, "fps", None), getattr(adapter, "sample_rate", None)
    if fps is None or sample_rate is None:
        raise ValueError(
            f"AVSyncEvaluator: the pipeline's adapter ({type(adapter).__name__}) needs fps and sample_rate (an "
            "audio-video adapter); this evaluator scores joint audio-video runs only"
        )
    return float(fps), int(sample_rate)
