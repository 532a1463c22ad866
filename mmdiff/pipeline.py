"""Generation from a trained run: ``mmdiff.load(run_dir).generate(...)`` and ``.save(...)``.

The work itself is :func:`mmdiff.generation.generate`, shared with the trainer's demo samples.

A run directory (or one checkpoint folder) holds everything needed: the resolved config says which adapter,
network and schedule to build, and the checkpoint holds the weights (EMA by default).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .checkpoints import find_checkpoint, load_weights, read_step_schedules, schedules_dir
from .components import build_model, build_network, generate_defaults
from .conditioners import Conditioner
from .configs import locate_run_assets
from .core import DiffusionModel
from .generation import GenerateOptions, Samples, generate, split_options
from .modality import ModalityAdapter

log = logging.getLogger("mmdiff.pipeline")

#: Options that choose the noise levels themselves: set in a call, they win over a tuned schedule.
_OWN_SCHEDULE = ("spacing", "sigma_min", "sigma_max", "sigma_data", "sigmas")


def _config_and_weights(path: Path) -> tuple[DictConfig, Path]:
    """Find the resolved config and the checkpoint for a run dir, a checkpoint folder or a weights file. A run dir
    gives its newest complete checkpoint (incomplete ones are skipped with a warning); the one used is logged."""
    checkpoint = find_checkpoint(path)
    folder = checkpoint.parent if checkpoint.is_file() else checkpoint
    config = folder / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"no config.yaml beside the weights at {checkpoint}")
    cfg = OmegaConf.load(config)
    objective = str(cfg.get("objective", {}).get("_target_", ""))
    if objective and hasattr(get_class(objective), "reconstruct"):
        raise ValueError(
            f"{path} is an autoencoder run ({objective.rsplit('.', 1)[-1]}): it does not generate on its own; train a "
            "latent diffusion model on it with autoencoder.path=<this run> (see docs/latent.md)"
        )
    # the run this checkpoint belongs to (RUN/checkpoints/step_N), where the run keeps its other files
    locate_run_assets(cfg, folder.parent.parent if folder.parent.name == "checkpoints" else None)
    return cfg, checkpoint


class Pipeline:
    """A trained model ready to generate: adapter + conditioner + network under its model definition + defaults.

    Built by :func:`load` from a run; the same components the trainer used, built by :mod:`mmdiff.components`.
    ``step_schedules``: the run's tuned step schedules (:func:`mmdiff.checkpoints.read_step_schedules`), used by
    :meth:`generate` for a ``(sampler, steps)`` they hold.
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
        step_schedules: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    ):
        self.adapter, self.conditioner, self.model, self.config = adapter, conditioner, model, config
        self.step_schedules = dict(step_schedules or {})
        self.checkpoint: Path | None = None  # the checkpoint loaded (set by load)
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.denoiser = model.denoiser(self.net)
        self.defaults = defaults or GenerateOptions()

    @classmethod
    def from_config(
        cls,
        cfg: DictConfig,
        weights: dict[str, torch.Tensor] | None = None,
        device: Any = "cpu",
        step_schedules: Mapping[str, Any] | None = None,
    ):
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
            step_schedules,
        )

    @property
    def options(self) -> tuple[str, ...]:
        """Every keyword :meth:`generate` takes: the generation options, the conditioner's requests and the parts of
        a sample the adapter takes by name (``video=``, ``audio=`` for audio-video)."""
        return (*GenerateOptions.keys(), *self.conditioner.request_keys, *self.adapter.given_keys)

    def generate(self, n: int | None = None, *, progress: bool = True, **options: Any) -> Samples:
        """Generate ``n`` media items (default: the run's ``generate.num_samples``).

        Options (defaults from the run's ``generate`` config; see :class:`~mmdiff.generation.GenerateOptions`):
        ``steps``, ``sampler``, ``spacing``, ``sigma_min``, ``sigma_max``, ``guidance_scale``, ``guidance_rescale``,
        ``guidance_interval``, ``eta``, ``s_churn``, ``s_noise``, ``seed``, ``length``; the conditioner's requests
        such as ``label`` (an index or a class name); and editing: ``init`` (a media file or one decoded item: a wav
        path, a ``(channels, samples)`` waveform, a video file, a ``(3, F, H, W)`` clip or ``(3, H, W)`` image in
        [0, 1]; or a batch already in the model's space) with ``strength`` (SDEdit: 1 regenerates fully, small
        values stay close to the input) and/or ``keep=(start, end)`` (keep that range of ``init`` and generate the
        rest: continuation when ``length`` is longer than the input, inpainting otherwise); parts of the samples the
        adapter takes by name, kept as given while the rest is generated (audio-video: ``video=`` a silent video or a
        list of one per sample for video-to-audio, ``audio=`` for audio-to-video; ``known_guidance_scale`` guides
        towards them). An unknown option is an
        error that lists the valid ones. Returns the items (a list) with their ``seeds`` and ``captions``.

        Noise levels: a tuned schedule of the run for this ``(sampler, steps)`` (``mmdiff tune-steps``) is used unless
        the call sets ``spacing``, ``sigma_min``, ``sigma_max`` or ``sigmas`` (an explicit list; ``steps`` follows
        its length) or ``tuned=False``; a log line says when it is. The list used is in the result's ``sigmas``.
        """
        chosen, request = split_options(options, self.conditioner, given=self.adapter.given_keys)
        if n is not None:
            chosen["num_samples"] = n
        if torch.is_tensor(chosen.get("sigmas")):
            chosen["sigmas"] = chosen["sigmas"].flatten().tolist()
        if isinstance(chosen.get("sigmas"), (list, tuple)) and "steps" not in chosen:
            chosen["steps"] = len(chosen["sigmas"]) - 1
        return generate(
            self.adapter,
            self.conditioner,
            self.denoiser,
            self._with_tuned(self.defaults.replace(**chosen), chosen),
            schedule=self.model.schedule,
            device=self.device,
            progress=progress,
            request=request,
        )

    def tuned_schedule(self, sampler: str, steps: int) -> dict[str, Any] | None:
        """The run's tuned schedule entry for ``(sampler, steps)`` (``{"sigmas": [...], "fitted": {...}}``) or
        ``None``."""
        return self.step_schedules.get(sampler, {}).get(str(int(steps)))

    def _with_tuned(self, options: GenerateOptions, chosen: Mapping[str, Any]) -> GenerateOptions:
        """``options`` with the tuned sigmas for its ``(sampler, steps)`` when the run has them, ``tuned`` is on and
        the call chose no noise levels of its own (see :meth:`generate`); logs one line when it uses them."""
        if not options.tuned or options.sigmas is not None or any(k in chosen for k in _OWN_SCHEDULE):
            return options
        entry = self.tuned_schedule(options.sampler, options.steps) if isinstance(options.steps, int) else None
        if entry is None:
            return options
        fitted = entry.get("fitted", {})
        how = ", ".join(
            f"{key} {fitted[key]:.4g}" if isinstance(fitted[key], float) else f"{key} {fitted[key]}"
            for key in ("error_before", "error_after", "guidance_scale", "checkpoint")
            if key in fitted
        )
        log.info(
            "using the tuned %d-step schedule for %s (%s; tuned=false turns it off): %s",
            options.steps,
            options.sampler,
            how or "no fit details",
            ", ".join(f"{s:.4g}" for s in entry["sigmas"]),
        )
        return options.replace(sigmas=tuple(float(s) for s in entry["sigmas"]))

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
    inside one. Uses the EMA weights unless ``ema=False``; picks CUDA when available unless ``device`` is given.
    The run's tuned step schedules (``step_schedules.json``) come with it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mmdiff.load: {path} does not exist")
    cfg, checkpoint = _config_and_weights(path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    schedules = read_step_schedules(schedules_dir(checkpoint))
    pipe = Pipeline.from_config(cfg, load_weights(checkpoint, ema=ema), device, schedules)
    pipe.checkpoint = checkpoint
    return pipe
