"""Is the generated soundtrack in sync with the generated picture? Audio onsets against visible bounces (issue 16).

Rows of :class:`AVSyncEvaluator`, each with the keys of :func:`~mmdiff.modalities.av.sync.sync_report` (the share of
onsets within one frame of a bounce, the share of bounces with an onset that near, the counts) and ``sync_vs_chance``:

* ``generated``: ``n`` clips from the joint model, sound and picture both generated; this row also has the video's
  temporal-change statistics against the real clips
  (:func:`~mmdiff.modalities.video.metrics.temporal_consistency_report`: ratio ~1 good, ~0 frozen, >> 1 flicker) and
  the per-track quality keys below;
* ``real``: ``n`` real clips, what a perfect model would score (the detectors' own ceiling on this data), with the
  same quality keys: the floor that a perfect model would reach at this ``n``;
* ``real, mismatched (chance)``: the same real clips, each with the next clip's sound: onsets that have nothing to do
  with the picture, the chance level that ``sync_vs_chance`` divides by. Pooled over every shift (the next clip's
  sound, the one after, ...: :func:`~mmdiff.modalities.av.sync.chance_scores`), the same expectation as the next
  clip alone but steady at ``n = 32``, where one pairing has only a handful of chance hits;
* ``video-to-audio``: sound generated for ``n`` other (held-out) real videos, scored against those videos' bounces;
* ``audio-to-video``: video generated for the same held-out clips' sound, its bounces scored against that sound's
  onsets.

The issue's goal reads off ``sync_vs_chance``: generated ``onsets_near_bounce`` at least 3x the chance row's (NaN
when the chance row has no onset near a bounce at all, which leaves nothing to divide by).

That chance level is the real clips', and an onset lands near a bounce by chance more often in clips that show more
bounces: generated pictures that flicker show velocity reversals where nothing bounced (2-3 per clip on the CPU preset
against 1.2 in the data), which raises ``sync_vs_chance`` without any sync. So every row but the chance row also has
``own_chance``, its own clips' precision with each clip's bounces against the other clips' onsets of the same row
(pooled over every shift, :func:`~mmdiff.modalities.av.sync.scores_with_own_chance`), and ``sync_vs_own_chance``, its precision
over that (1: the sound is no more in sync with its own picture than with another clip's).

Per-track quality, the measures of the single-modality evaluators on each track (issue 16), as extra keys of the
``generated`` and ``real`` rows; both are scored against the ``n`` held-out real clips, so ``real`` (the other ``n``
real clips against them) is the real-vs-real level, the sampling noise floor of a Fréchet distance at this ``n``:

* ``video_frechet_distance``: the Fréchet distance of :func:`~mmdiff.modalities.video.metrics.video_features` (17
  handcrafted clip features), as :class:`~mmdiff.modalities.video.evaluate.VideoEvaluator` reports it;
* ``audio_frechet_distance``: the Fréchet distance of :func:`~mmdiff.modalities.audio.metrics.audio_features` (41
  features) of the soundtracks' first channel, as :class:`~mmdiff.modalities.audio.evaluate.MusicEvaluator` does;
* the :data:`~mmdiff.modalities.video.metrics.OBJECT_STABILITY_KEYS` of the video track
  (:func:`~mmdiff.modalities.video.metrics.object_stability`: whether the bright objects keep their number, area and
  colour from frame to frame), as the video evaluator reports them;
* ``audio_voiced_share``: pyin's share of pitched frames (:func:`~mmdiff.modalities.audio.metrics.voiced_pitches`).
  Kept because the knocks are pitched tones (330/494/740 Hz) in silence: real clips score about 0.6 (each knock
  rings for a few pitched frames), while the known failures score 0 (silence, or silence made as white noise), and it
  costs about 0.1 s a clip on a CPU, little next to generating the clip. MusicEvaluator's ``on_scale_share`` is left
  out: the knocks follow no scale (three shape pitches, bent by up to a semitone with the object's size).

Extra keys rather than rows of their own: ``mmdiff eval`` prints one column per row and one line per key, so the
quality figures read as lines where ``generated`` and ``real`` stand side by side, and every row stays a sync row.
With ``n`` at most the feature count (17 video, 41 audio) a Fréchet distance is mostly sampling noise: a warning on
``mmdiff.eval`` says so (:func:`~mmdiff.modalities.evaluation.warn_frechet_size`); compare the generated figure with
the ``real`` one at the same ``n``, never across ``n``.
"""

from __future__ import annotations

from typing import Any

from ...metrics import frechet_distance
from ..audio.metrics import FEATURE_NAMES as AUDIO_FEATURES
from ..audio.metrics import audio_features, voiced_pitches
from ..evaluation import check_n, real_items, warn_frechet_size
from ..video.metrics import FEATURE_NAMES as VIDEO_FEATURES
from ..video.metrics import object_stability, temporal_consistency_report, video_features
from .dependence import cross_modal_dependence
from .sync import chance_scores, detect, scores_with_own_chance

CHANCE_ROW = "real, mismatched (chance)"


class AVSyncEvaluator:
    """The rows above for a joint audio-video pipeline ``pipe`` (from :func:`mmdiff.load`) and its ``dataset``.

    ``n``: clips per set when the call gives none (``2 n`` real clips are drawn: ``n`` scored, ``n`` held out for
    video-to-audio and audio-to-video). ``video_to_audio=False`` / ``audio_to_video=False`` leave out those rows (a
    model trained without that known track). The frame rate and sample rate come from ``pipe.adapter`` (``fps``,
    ``sample_rate``); the sync tolerance is one frame. ``dependence``: the generated row also gets the model's
    cross-modal dependence on the held-out clips (:func:`~mmdiff.modalities.av.dependence.cross_modal_dependence`:
    ``audio_needs_video`` ... 1 when a track's prediction ignores the other track), which says whether a model out
    of sync failed to learn the coupling at all.
    """

    def __init__(self, n: int = 32, video_to_audio: bool = True, audio_to_video: bool = True, dependence: bool = True):
        self.n, self.video_to_audio = check_n(n, "AVSyncEvaluator"), bool(video_to_audio)
        self.audio_to_video, self.dependence = bool(audio_to_video), bool(dependence)

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
        chance = chance_scores(onsets, bounces, tolerance)  # the real clips' own chance level is the chance row
        quality = _track_quality(generated, reference, held_out, sample_rate, n)
        report = {
            "generated": {
                **_sync_row(generated, fps, sample_rate, tolerance),
                **temporal_consistency_report([item["video"] for item in generated], real_videos),
                **quality["generated"],
                **(cross_modal_dependence(pipe, held_out, seed=seed) if self.dependence else {}),
            },
            "real": {**scores_with_own_chance(onsets, bounces, tolerance, chance), **quality["real"]},
            CHANCE_ROW: chance,
        }
        if self.video_to_audio:
            videos = [item["video"] for item in held_out]  # n x (3, F, H, W) in [0, 1]
            # The given videos fix the length: a length option is for the joint row only.
            v2a_options = {key: value for key, value in options.items() if key != "length"}
            sound = pipe.generate(n, seed=seed, progress=progress, video=videos, **v2a_options)
            paired = [{"video": video, "audio": item["audio"]} for video, item in zip(videos, sound)]
            report["video-to-audio"] = _sync_row(paired, fps, sample_rate, tolerance)
        if self.audio_to_video:
            sounds = [item["audio"] for item in held_out]  # n x (C, S)
            pictures = pipe.generate(n, seed=seed, progress=progress, audio=sounds, **generate_options)
            paired = [{"video": item["video"], "audio": sound} for item, sound in zip(pictures, sounds)]
            report["audio-to-video"] = _sync_row(paired, fps, sample_rate, tolerance)
        chance = report[CHANCE_ROW]["onsets_near_bounce"]
        for row in report.values():
            row["sync_vs_chance"] = row["onsets_near_bounce"] / chance if chance > 0 else float("nan")
        return report


def _sync_row(items: list[dict], fps: float, sample_rate: int, tolerance: float) -> dict[str, float]:
    """:func:`~mmdiff.modalities.av.sync.scores_with_own_chance` of ``items``' detections."""
    return scores_with_own_chance(*detect(items, fps, sample_rate), tolerance)


def _track_quality(
    generated: list[dict], reference: list[dict], held_out: list[dict], sample_rate: int, n: int
) -> dict[str, dict[str, float]]:
    """The quality keys of the module docstring for the ``generated`` and ``real`` (``reference``) clips, each set
    against ``held_out``: ``{"generated": {...}, "real": {...}}``."""
    warn_frechet_size(n, len(VIDEO_FEATURES), "AVSyncEvaluator (video track)")
    warn_frechet_size(n, len(AUDIO_FEATURES), "AVSyncEvaluator (audio track)")
    sets = {"generated": generated, "real": reference, "held out": held_out}
    # Generated sound may differ from the real clips' length by a hop of the vocoder: cut every set to the shortest,
    # so that clip length is no feature (pyin batches clips of equal length, too). First channel, as MusicEvaluator.
    length = min(item["audio"].shape[-1] for items in sets.values() for item in items)
    mono = {name: [item["audio"][0, :length] for item in items] for name, items in sets.items()}  # (length,) each
    video = {name: video_features([item["video"] for item in items]) for name, items in sets.items()}  # (n, 17) each
    audio = {name: audio_features(clips, sample_rate) for name, clips in mono.items()}  # (n, 41) each
    rows = {}
    for name in ("generated", "real"):
        f0, frames = voiced_pitches(mono[name], sample_rate)  # (voiced_frames,), all frames
        rows[name] = {
            "video_frechet_distance": frechet_distance(video[name], video["held out"], warn=False),
            "audio_frechet_distance": frechet_distance(audio[name], audio["held out"], warn=False),
            "audio_voiced_share": len(f0) / frames,
            **object_stability([item["video"] for item in sets[name]]),
        }
    return rows


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
