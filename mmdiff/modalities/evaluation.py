"""What every evaluator shares: checking ``n``, and drawing the real items that generated ones are scored against.

An evaluator (``conf/evaluator/``, chosen by a recipe) is called as ``evaluator(pipe, dataset, n=..., seed=...,
**generate_options)`` and returns ``{row: {metric: value}}`` with the rows ``"generated"`` and ``"real, held out"``
(other real items: what a perfect model would score). Both rows are scored against ``n`` real items, so ``2 n`` real
items are needed. A dataset that offers evaluation crops (``num_crops(index)`` and ``crops(index, positions)``, as
:class:`~mmdiff.modalities.audio.folder.AudioFolder` and :class:`~mmdiff.modalities.video.folder.VideoFolder` do)
gives several non-overlapping crops per file, so that seven long files can give dozens of clips; any other dataset
gives its items in order (the built-in synths are fixed sets whose items cycle through the classes).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..metrics import frechet_size_warning

log = logging.getLogger("mmdiff.eval")

# The real items are chosen by this seed, not by the evaluation's: changing the seed of the generated items leaves the
# reference set as it was, so reports with different seeds differ by the model's samples only.
REAL_ITEMS_SEED = 0


def check_n(n: Any, who: str) -> int:
    """``n`` as an int, or a one-line error: at least 2 items per set (a covariance needs two)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"{who}: n must be a whole number >= 2 (items per set), got {n!r}")
    return n


def warn_frechet_size(n: int, dim: int, who: str) -> None:
    """Log once per evaluation (on ``mmdiff.eval``) when ``n`` items are too few for a Fréchet distance of ``dim``
    features to mean much (see :func:`~mmdiff.metrics.frechet_size_warning`)."""
    if message := frechet_size_warning(n, dim):
        log.warning("%s: %s", who, message)


def _windows(dataset: Any) -> list[tuple[int, int | None]]:
    """``(index, crop)`` for every evaluation crop of ``dataset``; ``(index, None)`` per item when it has no crops."""
    if hasattr(dataset, "num_crops") and hasattr(dataset, "crops"):
        return [(i, k) for i in range(len(dataset)) for k in range(dataset.num_crops(i))]
    return [(i, None) for i in range(len(dataset))]


def real_items(dataset: Any, n: int, who: str, what: str = "items") -> tuple[list[dict], list[dict]]:
    """``(reference, held_out)``: two disjoint lists of ``n`` real items of ``dataset`` each.

    Crops of a folder are shuffled (seeded by :data:`REAL_ITEMS_SEED`) before they are split, so that both sets mix
    all files rather than taking the first files for one set and the last for the other; held-out crops may come from
    other parts of the same files. Too few items is a one-line error that says how many there are.
    """
    windows = _windows(dataset)
    if len(windows) < 2 * n:
        cropped = windows and windows[0][1] is not None
        source = f" ({len(dataset)} files cut into non-overlapping crops)" if cropped else ""
        raise ValueError(
            f"{who}: n={n} needs 2 x n = {2 * n} real {what} ({n} to score against, {n} held out); the data has "
            f"{len(windows)}{source}: use n={len(windows) // 2} or less"
        )
    if windows[0][1] is not None:
        order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(REAL_ITEMS_SEED)).tolist()
        windows = [windows[i] for i in order]
    items = _fetch(dataset, windows[: 2 * n])
    return items[:n], items[n:]


def _fetch(dataset: Any, windows: list[tuple[int, int | None]]) -> list[dict]:
    """The items of ``windows``, in order; the crops of one file are read together (one decode per file)."""
    if not windows or windows[0][1] is None:
        return [dataset[index] for index, _ in windows]
    by_file: dict[int, list[int]] = {}
    for slot, (index, _) in enumerate(windows):
        by_file.setdefault(index, []).append(slot)
    items: list[dict] = [{}] * len(windows)
    for index, slots in by_file.items():
        for slot, item in zip(slots, dataset.crops(index, [windows[s][1] for s in slots])):
            items[slot] = item
    return items


class PromptAdherence:
    """Does a text-conditioned model do what the prompt says? Measured without any pretrained network.

    For the last ``n`` items of a built-in synth data set (which know the attributes that made them), a prompt names
    some of those attributes (:meth:`prompt`); the model generates one item per prompt; an attribute estimator fitted
    on the first ``fit_n`` real items (:meth:`estimator`, never the scored ones) measures the attributes of the
    generated items and of the real items the prompts came from. Rows, each ``{attribute: share that matches}``:

    * ``generated``: the share of generated items whose measured attribute is the one the prompt asked for;
    * ``real clips``: the same estimator on the real items: how often it reads true attributes right (the ceiling);
    * rows of :meth:`reference_rows`, such as ``real via mel + vocoder`` for audio (the ceiling through the model's
      representation);
    * ``chance``: what uniform guessing would score.

    Subclasses give the media key, the prompt, the prompt parser, the estimator and the two scores.
    """

    media_key = ""

    def __init__(self, n: int = 48, fit_n: int = 96):
        self.n, self.fit_n = check_n(n, type(self).__name__), int(fit_n)

    def __call__(
        self, pipe: Any, dataset: Any, n: int | None = None, seed: int = 0, progress: bool = False, **options: Any
    ) -> dict[str, dict[str, float]]:
        who = type(self).__name__
        n = check_n(self.n if n is None else n, who)
        if not hasattr(dataset, "attributes"):
            raise ValueError(
                f"{who}: needs data that knows each item's attributes (the built-in synth); {type(dataset).__name__} "
                "does not: score a folder-trained model by listening and looking"
            )
        if len(dataset) < n + self.fit_n:
            raise ValueError(
                f"{who}: n={n} plus fit_n={self.fit_n} need {n + self.fit_n} items; the data has {len(dataset)}"
            )
        if "prompt" in options:
            raise ValueError(f"{who}: the prompts come from the real items' attributes; leave prompt= out")
        indices = range(len(dataset) - n, len(dataset))
        prompts = [self.prompt(dataset.attributes(i)) for i in indices]
        requested = [self.parse(p) for p in prompts]
        estimator = self.estimator(dataset)
        generated = pipe.generate(n, seed=seed, progress=progress, prompt=prompts, **options)
        real = [dataset[i][self.media_key] for i in indices]
        measured = self.estimate(estimator, generated)
        report = {
            "generated": self.score(requested, measured),
            "real clips": self.score(requested, self.estimate(estimator, real)),
        }
        for name, items in self.reference_rows(pipe, real).items():
            report[name] = self.score(requested, self.estimate(estimator, items))
        report["chance"] = self.chance(requested, measured)
        return report

    def reference_rows(self, pipe: Any, real: list[Any]) -> dict[str, list[Any]]:
        """More rows of real media to score, e.g. real clips through the model's representation; default none."""
        return {}

    def prompt(self, attributes: dict[str, Any]) -> str:
        raise NotImplementedError

    def parse(self, prompt: str) -> dict[str, Any]:
        raise NotImplementedError

    def estimator(self, dataset: Any) -> Any:
        raise NotImplementedError

    def estimate(self, estimator: Any, items: list[Any]) -> list[dict]:
        """The estimator's measurements of media ``items`` (generated ones, or the real items' media)."""
        return estimator.estimate(items)

    def score(self, requested: list[dict], measured: list[dict]) -> dict[str, float]:
        raise NotImplementedError

    def chance(self, requested: list[dict], measured: list[dict]) -> dict[str, float]:
        raise NotImplementedError
