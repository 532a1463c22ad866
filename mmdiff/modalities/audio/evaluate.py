"""Is the generated music music? Generated clips against real ones, with two reference rows to read them by.

* ``generated``: ``n`` clips from the model (labels cycling through the classes);
* ``real, held out``: ``n`` other real clips: the score a perfect model would get (the sampling floor);
* ``real via mel + vocoder``: real clips through the log-mel representation and the vocoder: the best any model
  of this representation can do.

Each row has pyin's ``voiced_share`` and ``on_scale_share`` and the Fréchet distance of handcrafted features to
``n`` real clips (:mod:`mmdiff.modalities.audio.metrics`).
"""

from __future__ import annotations

from typing import Any

import torch

from .metrics import audio_features, frechet_distance, pitch_on_scale_share


def evaluate_music(
    pipe: Any,
    dataset: Any,
    n: int = 32,
    scale: str | None = None,
    seed: int = 0,
    progress: bool = False,
    **generate_options: Any,
) -> dict[str, dict[str, float]]:
    """The three rows above for the pipeline ``pipe`` (from :func:`mmdiff.load`) and its training ``dataset``."""
    if len(dataset) < 2 * n:
        raise ValueError(f"evaluation needs 2 x n = {2 * n} real clips; the dataset has {len(dataset)}")
    adapter = pipe.adapter
    real = torch.stack([dataset[i]["audio"] for i in range(n)])  # (n, channels, samples)
    held_out = torch.stack([dataset[i]["audio"] for i in range(n, 2 * n)])
    generated = torch.stack(pipe.generate(n, seed=seed, progress=progress, **generate_options))
    with torch.no_grad():
        through_vocoder = adapter.mel_to_waveform(adapter.waveform_to_mel(real))
    length = min(x.shape[-1] for x in (real, held_out, generated, through_vocoder))
    mono = {
        name: [clip[0, :length].numpy() for clip in clips]
        for name, clips in (
            ("real", real),
            ("generated", generated),
            ("real, held out", held_out),
            ("real via mel + vocoder", through_vocoder),
        )
    }
    scale = scale or getattr(dataset, "scale", "c_major_pentatonic")
    reference = audio_features(mono["real"], adapter.sample_rate)
    report = {}
    for name in ("generated", "real, held out", "real via mel + vocoder"):
        pitch = pitch_on_scale_share(mono[name], adapter.sample_rate, scale)
        report[name] = {
            "voiced_share": pitch["voiced_share"],
            "on_scale_share": pitch["on_scale_share"],
            "frechet_distance": frechet_distance(audio_features(mono[name], adapter.sample_rate), reference),
        }
    return report
