"""The modality adapter: everything modality-specific, behind one small base class.

Data flows one way: dataset items -> :meth:`ModalityAdapter.encode` -> tensor ``x0`` the core sees -> diffusion ->
tensor -> :meth:`ModalityAdapter.decode` -> media -> :meth:`ModalityAdapter.write` / :meth:`ModalityAdapter.preview`.

An adapter knows media and tensors only: class labels, text and other conditions belong to the conditioner
(:mod:`mmdiff.conditioners`), evaluation to an evaluator. What an adapter adds to the network's input for editing
(video's known frames) it gives through :meth:`~ModalityAdapter.known_conditions`, so generation never asks which
modality it runs. An adapter is chosen in the config with Hydra's ``_target_``; a new modality is a new module plus
config files (``conf/adapter/``, ``conf/net/``, ``conf/data/``) and a recipe, with no edit to mmdiff.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor


class ModalityAdapter(ABC):
    """What the trainer and generation need from a modality: four methods to write, the others optional."""

    #: Parts of a sample a generation call may give by name (``pipe.generate(video="silent.mp4")`` for an
    #: audio-video adapter), loaded by :meth:`load_given`; none by default.
    given_keys: tuple[str, ...] = ()

    #: The noise the model trains and samples with, as a map of white noise ``(B, ...)`` (e.g.
    #: :class:`~mmdiff.core.noise.SharedNoise`: a clip's frames share part of their noise); ``None``: white noise.
    #: The trainer gives it to the loss and generation to the sampler, so both read one definition.
    noise_prior: Callable[[Tensor], Tensor] | None = None

    @abstractmethod
    def encode(self, batch: dict[str, Any], generator: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        """A collated dataset batch (already on the training device) -> ``(x0 (B, ...), conditions)``.

        ``conditions`` are the adapter's own network inputs besides ``x0`` (video's known frames), usually empty.
        ``generator`` (per-sample generators from the trainer) drives any training-time randomness of the encoding
        (e.g. which video frames are given as known), so that resumed and multi-process runs stay exact.
        """

    @abstractmethod
    def decode(self, x: Tensor) -> list[Any]:
        """Generated tensors ``(B, ...)`` -> one media item per sample (a waveform, a clip, an array).

        Generation decodes each sample under its own seed (the global RNG is seeded per sample), so a decoder that
        draws random numbers (Griffin-Lim's initial phase) is reproducible by seed with no extra code here.
        """

    @abstractmethod
    def sample_shape(self, length: float | None = None) -> tuple[int, ...]:
        """Per-sample tensor shape (no batch dim) for a requested length (seconds, frames; ``None``: the default)."""

    @abstractmethod
    def write(self, items: list[Any], directory: Path, prefix: str = "sample") -> list[Path]:
        """Write media files for ``items`` into ``directory``; return their paths."""

    # ---- optional --------------------------------------------------------------------------------------------
    def preview(self, items: list[Any], path: Path, captions: list[str] | None = None) -> Path | None:
        """Write one PNG that shows ``items`` (spectrograms, frame grids, scatter plots), each titled by its caption
        (class and seed); return its path, or ``None`` when the modality has no picture."""
        return None

    def load_init(self, source: Any, length: float | None = None) -> Tensor:
        """A media file or a decoded item -> the per-sample tensor, padded or cropped to ``length`` (editing)."""
        raise ValueError(f"init: {type(self).__name__} takes no media input")

    def range_mask(self, shape: tuple[int, ...], start: float, end: float) -> Tensor:
        """A mask broadcastable to ``shape`` that is 1 on ``[start, end)`` (seconds, frames: the adapter's unit)."""
        raise ValueError(f"keep: {type(self).__name__} has no length to keep a range of")

    def known_mask(self, x0: Tensor, generator: Any = None) -> Tensor | None:
        """The mask of the parts of a training batch ``x0 (B, ...)`` given to the network as known (1 there), drawn
        with ``generator``; ``None`` when the adapter gives none. :meth:`encode` uses it with
        :meth:`known_conditions`, and so does an adapter that wraps this one (latent diffusion: the mask of the
        latents). Default: none."""
        return None

    def load_given(self, given: dict[str, Any], n: int, length: float | None = None) -> tuple[Tensor, Tensor]:
        """Named parts of ``n`` samples a call gives (keys of :attr:`given_keys`) -> ``(known (n, ...), mask)``, the
        mask 1 on what is given: generation keeps those parts and gives them to the network as known
        (:meth:`known_conditions`), so a joint model generates the rest in agreement (video-to-audio)."""
        raise ValueError(f"{type(self).__name__} takes no given parts")

    def given_mask(self, shape: tuple[int, ...], keys: list[str]) -> Tensor:
        """The mask (1 on the named parts of :attr:`given_keys`) of samples of ``shape`` ``(B, ...)``, as
        :meth:`load_given` returns it: generation's ``first=`` gives a generated part back as known."""
        raise ValueError(f"{type(self).__name__} has no named parts")

    def known_conditions(self, known: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Network inputs telling the model which parts of ``known (B, ...)`` are given (``mask`` 1 there); a model
        trained with such inputs (video's known frames) then generates the rest in agreement. Default: none."""
        return {}

    def training_known(self, x0: Tensor, generator: Any = None) -> dict[str, Tensor]:
        """The known parts of a training batch ``x0 (B, ...)``: the network's inputs (:meth:`known_conditions` of
        :meth:`known_mask`) and ``known_mask`` itself, which the loss leaves out (generation keeps those parts
        exactly, so the network's output there is never used); ``{}`` when the adapter gives none. For
        :meth:`encode`."""
        mask = self.known_mask(x0, generator)
        return {} if mask is None else {**self.known_conditions(x0, mask), "known_mask": mask}
