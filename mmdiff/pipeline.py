"""Generation from a trained run: ``mmdiff.load(run_dir).generate(...)`` and ``.save(...)``.

A run directory (or one checkpoint folder) holds everything needed: the resolved config says which adapter,
network and schedule to build, and the checkpoint holds the weights (EMA by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .checkpoints import find_checkpoint, load_weights
from .core import NetworkDenoiser, sample
from .modality import EditableAdapter, ModalityAdapter


def generate_media(
    adapter: ModalityAdapter,
    denoiser: Any,
    n: int,
    *,
    schedule: Any = None,
    steps: int = 25,
    sampler: str = "dpmpp_2m",
    spacing: str = "trailing",
    guidance_scale: float = 1.0,
    guidance_rescale: float = 0.0,
    seed: int | Sequence[int] = 0,
    length: float | None = None,
    init: torch.Tensor | None = None,
    strength: float = 1.0,
    mask: torch.Tensor | None = None,
    device: Any = "cpu",
    progress: bool = False,
    **conditions: Any,
) -> list[Any]:
    """Sample ``n`` items and decode them to media. ``seed`` is a base seed (sample ``i`` uses ``seed + i``, so
    any one sample can be regenerated alone) or a list of ``n`` seeds. ``conditions`` go to the adapter
    (``label=3``). With ``init (n, ...)`` the output has its shape and ``length`` is ignored."""
    seeds = [seed + i for i in range(n)] if isinstance(seed, int) else list(seed)
    cond, null_cond = adapter.conditions(n, device=device, **conditions)
    use_guidance = guidance_scale != 1.0 and bool(cond)
    shape = (n, *(init.shape[1:] if init is not None else adapter.sample_shape(length)))
    x = sample(
        denoiser,
        shape,
        sampler=sampler,
        steps=steps,
        seed=seeds,
        schedule=schedule,
        spacing=spacing,
        cond=cond,
        guidance_scale=guidance_scale if use_guidance else 1.0,
        null_cond=null_cond if use_guidance else None,
        guidance_rescale=guidance_rescale,
        init=init,
        strength=strength,
        mask=mask,
        device=device,
        progress=progress,
    )
    return adapter.decode(x)


def _config_and_weights(path: Path) -> tuple[DictConfig, Path]:
    """Find the resolved config and the checkpoint for a run dir, a checkpoint folder or a weights file. A run dir
    gives its newest complete checkpoint (incomplete ones are skipped with a warning); the one used is logged."""
    checkpoint = find_checkpoint(path)
    config = (checkpoint.parent if checkpoint.is_file() else checkpoint) / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"no config.yaml beside the weights at {checkpoint}")
    return OmegaConf.load(config), checkpoint


class Pipeline:
    """A trained model ready to generate: adapter + denoiser + schedule + generation defaults."""

    def __init__(
        self,
        adapter: ModalityAdapter,
        net: nn.Module,
        schedule: Any,
        parameterization: str,
        defaults: dict[str, Any] | None = None,
        device: Any = "cpu",
        config: DictConfig | None = None,
    ):
        self.adapter, self.schedule, self.device, self.config = adapter, schedule, torch.device(device), config
        self.net = net.to(self.device).eval()
        self.denoiser = NetworkDenoiser(self.net, schedule, parameterization)
        self.defaults = dict(defaults or {})

    @classmethod
    def from_config(cls, cfg: DictConfig, weights: dict[str, torch.Tensor] | None = None, device: Any = "cpu"):
        net = instantiate(cfg.net)
        if weights is not None:
            net.load_state_dict(weights)
        gen = OmegaConf.to_container(cfg.generate, resolve=True)
        defaults = {
            k: gen[k] for k in ("sampler", "steps", "spacing", "guidance_scale", "guidance_rescale") if k in gen
        }
        return cls(
            instantiate(cfg.adapter), net, instantiate(cfg.schedule), cfg.parameterization, defaults, device, cfg
        )

    def generate(
        self,
        n: int = 4,
        *,
        init: Any = None,
        keep: tuple[float, float] | None = None,
        progress: bool = True,
        **options: Any,
    ) -> list[Any]:
        """Generate ``n`` media items.

        Options (defaults from the run's ``generate`` config): ``steps``, ``sampler``, ``spacing``,
        ``guidance_scale``, ``guidance_rescale``, ``seed``, ``length``, conditions such as ``label``, and editing:
        ``init`` (a media file or one decoded item: a wav path, a ``(channels, samples)`` waveform, a video file, a
        ``(3, F, H, W)`` clip or ``(3, H, W)`` image in [0, 1]; or a batch already in the model's space) with
        ``strength`` (SDEdit: 1 regenerates fully, small values
        stay close to the input) and/or ``keep=(start, end)`` (keep that range of ``init`` and generate the rest:
        continuation when ``length`` is longer than the input, inpainting otherwise).
        """
        options = {**self.defaults, **options}
        if init is not None and not self._is_model_batch(init, options.get("length")):
            if not isinstance(self.adapter, EditableAdapter):
                raise ValueError(f"{type(self.adapter).__name__} takes no media input (init)")
            item = self.adapter.load_init(init, options.get("length"))  # (per-sample shape)
            init = item[None].expand(n, *item.shape).to(self.device)
        if keep is not None:
            if init is None:
                raise ValueError("keep=(start, end) needs init: the media whose range is kept")
            options["mask"] = self.adapter.range_mask(tuple(init.shape), *keep).to(self.device)
            if getattr(self.adapter, "takes_known_frames", False):  # the network is also told which frames are known
                options.update(known=init, known_mask=options["mask"])
        return generate_media(
            self.adapter,
            self.denoiser,
            n,
            schedule=self.schedule,
            device=self.device,
            progress=progress,
            init=init,
            **options,
        )

    def _is_model_batch(self, init: Any, length: Any) -> bool:
        """A batch tensor already in the model's space (``(n, *sample_shape)``), as opposed to one media item."""
        return torch.is_tensor(init) and init.ndim == len(self.adapter.sample_shape(length)) + 1

    def save(self, items: list[Any], out: str | Path, prefix: str = "sample", preview: bool = True) -> list[Path]:
        """Write ``items`` as media files into ``out`` (and a ``preview.png``); return the media paths."""
        out = Path(out)
        paths = self.adapter.write(items, out, prefix)
        if preview:
            self.adapter.preview(items, out / f"{prefix}_preview.png")
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
