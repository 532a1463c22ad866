"""Generation from a trained run: ``mmdiff.load(run_dir).generate(...)`` and ``.save(...)``.

The work itself is :func:`mmdiff.generation.generate`, shared with the trainer's demo samples.

A run directory (or one checkpoint folder) holds everything needed: the resolved config says which adapter,
network and schedule to build, and the checkpoint holds the weights (EMA by default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .checkpoints import find_checkpoint, load_weights
from .components import build_model, build_network, generate_defaults
from .conditioners import Conditioner
from .core import DiffusionModel
from .generation import GenerateOptions, Samples, generate, split_options
from .modality import ModalityAdapter


def _config_and_weights(path: Path) -> tuple[DictConfig, Path]:
    """Find the resolved config and the checkpoint for a run dir, a checkpoint folder or a weights file. A run dir
    gives its newest complete checkpoint (incomplete ones are skipped with a warning); the one used is logged."""
    checkpoint = find_checkpoint(path)
    config = (checkpoint.parent if checkpoint.is_file() else checkpoint) / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"no config.yaml beside the weights at {checkpoint}")
    return OmegaConf.load(config), checkpoint


class Pipeline:
    """A trained model ready to generate: adapter + conditioner + network under its model definition + defaults.

    Built by :func:`load` from a run; the same components the trainer used, built by :mod:`mmdiff.components`.
    """

    def __init__(
        self,
        adapter: ModalityAdapter,
        conditioner: Conditioner,
        net: nn.Module,
        model: DiffusionModel,
        defaults: GenerateOptions | None = None,
        device: Any = "cpu",
        config: DictConfig | None = None,
    ):
        self.adapter, self.conditioner, self.model, self.config = adapter, conditioner, model, config
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.denoiser = model.denoiser(self.net)
        self.defaults = defaults or GenerateOptions()

    @classmethod
    def from_config(cls, cfg: DictConfig, weights: dict[str, torch.Tensor] | None = None, device: Any = "cpu"):
        conditioner = instantiate(cfg.conditioner)
        net = build_network(cfg, conditioner)
        if weights is not None:
            net.load_state_dict(weights)
        return cls(
            instantiate(cfg.adapter),
            conditioner,
            net,
            build_model(cfg),
            generate_defaults(cfg),
            device,
            cfg,
        )

    @property
    def options(self) -> tuple[str, ...]:
        """Every keyword :meth:`generate` takes: the generation options and the conditioner's requests."""
        return (*GenerateOptions.keys(), *self.conditioner.request_keys)

    def generate(self, n: int | None = None, *, progress: bool = True, **options: Any) -> Samples:
        """Generate ``n`` media items (default: the run's ``generate.num_samples``).

        Options (defaults from the run's ``generate`` config; see :class:`~mmdiff.generation.GenerateOptions`):
        ``steps``, ``sampler``, ``spacing``, ``sigma_min``, ``sigma_max``, ``guidance_scale``, ``guidance_rescale``,
        ``guidance_interval``, ``eta``, ``s_churn``, ``s_noise``, ``seed``, ``length``; the conditioner's requests
        such as ``label`` (an index or a class name); and editing: ``init`` (a media file or one decoded item: a wav
        path, a ``(channels, samples)`` waveform, a video file, a ``(3, F, H, W)`` clip or ``(3, H, W)`` image in
        [0, 1]; or a batch already in the model's space) with ``strength`` (SDEdit: 1 regenerates fully, small
        values stay close to the input) and/or ``keep=(start, end)`` (keep that range of ``init`` and generate the
        rest: continuation when ``length`` is longer than the input, inpainting otherwise). An unknown option is an
        error that lists the valid ones. Returns the items (a list) with their ``seeds`` and ``captions``.
        """
        chosen, request = split_options(options, self.conditioner)
        if n is not None:
            chosen["num_samples"] = n
        return generate(
            self.adapter,
            self.conditioner,
            self.denoiser,
            self.defaults.replace(**chosen),
            schedule=self.model.schedule,
            device=self.device,
            progress=progress,
            request=request,
        )

    def save(self, items: list[Any], out: str | Path, prefix: str = "sample", preview: bool = True) -> list[Path]:
        """Write ``items`` as media files into ``out`` (and a ``<prefix>_preview.png`` captioned with each sample's
        condition and seed); return the media paths."""
        out = Path(out)
        paths = self.adapter.write(items, out, prefix)
        if preview:
            captions = items.captions if isinstance(items, Samples) else None
            self.adapter.preview(items, out / f"{prefix}_preview.png", captions)
        return paths


def load(path: str | Path, device: Any = None, ema: bool = True) -> Pipeline:
    """Load a trained run for generation from its run directory, a checkpoint folder, or a ``.safetensors`` file
    inside one. Uses the EMA weights unless ``ema=False``; picks CUDA when available unless ``device`` is given."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mmdiff.load: {path} does not exist")
    cfg, checkpoint = _config_and_weights(path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return Pipeline.from_config(cfg, load_weights(checkpoint, ema=ema), device)
