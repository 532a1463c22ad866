"""Codecs: the autoencoder a latent run diffuses through, loaded from a path, and its copy kept with the run.

A *codec* is any frozen ``nn.Module`` with ``latent_channels``, ``encode(x (B, C, *S)) -> z (B, c, *s)`` (the
posterior mode: deterministic), ``decode(z) -> x`` and the per-sample shape maps ``latent_shape`` / ``media_shape``.
Two kinds meet it:

- mmdiff's own :class:`mmdiff.nn.Autoencoder`, trained by ``mmdiff train recipe=audio_vae`` (or ``video_vae``):
  ``autoencoder.path`` names the run directory, one of its checkpoint folders, or the copy a latent run keeps;
- any diffusers autoencoder in a local folder (``config.json`` + safetensors): :class:`DiffusersCodec`.

A latent run keeps its codec in ``RUN/autoencoder/`` (:func:`store_codec`), so ``mmdiff.load(RUN)`` needs nothing
outside the run: an mmdiff autoencoder as ``codec.json`` (its constructor arguments; JSON, never code) +
``model.safetensors`` (the EMA weights, without the discriminator), a diffusers one as a copy of its folder's
``config.json`` and safetensors weights.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..checkpoints import find_checkpoint, load_weights

log = logging.getLogger("mmdiff.latent")

#: The folder of a latent run that holds its codec and latent statistics.
CODEC_DIR = "autoencoder"
#: The file of a stored mmdiff codec that holds its constructor arguments.
CODEC_CONFIG = "codec.json"
_AUTOENCODER_TARGET = "mmdiff.nn.Autoencoder"


@runtime_checkable
class Codec(Protocol):
    """What a latent adapter needs from an autoencoder (see the module docstring)."""

    latent_channels: int

    def encode(self, x: Tensor) -> Tensor: ...

    def decode(self, z: Tensor) -> Tensor: ...

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]: ...

    def media_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]: ...


def _frozen(module: nn.Module) -> nn.Module:
    module.eval()
    module.requires_grad_(False)
    return module


def _autoencoder(arguments: dict[str, Any], weights: dict[str, Tensor], where: Path) -> nn.Module:
    """An :class:`mmdiff.nn.Autoencoder` from its constructor arguments and weights, without the discriminator."""
    from ..nn import Autoencoder

    arguments = {k: v for k, v in arguments.items() if not k.startswith("_")}
    arguments["discriminator_channels"] = 0  # only the autoencoder is used from here on
    try:
        net = Autoencoder(**arguments)
    except TypeError as e:
        raise ValueError(f"{where}: the autoencoder's settings do not fit mmdiff.nn.Autoencoder ({e})") from None
    kept = {k: v for k, v in weights.items() if not k.startswith("discriminator.")}
    missing, unexpected = net.load_state_dict(kept, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{where}: the weights do not fit the autoencoder's settings (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]})"
        )
    return _frozen(net)


def _run_autoencoder(path: Path) -> tuple[dict[str, Any], dict[str, Tensor], Path]:
    """``(constructor arguments, EMA weights, checkpoint)`` of an mmdiff autoencoder run or checkpoint folder."""
    from omegaconf import OmegaConf

    checkpoint = find_checkpoint(path)
    folder = checkpoint.parent if checkpoint.is_file() else checkpoint
    cfg = OmegaConf.load(folder / "config.yaml")
    net = OmegaConf.to_container(cfg.get("net", {}), resolve=True)
    if not isinstance(net, dict) or net.get("_target_") != _AUTOENCODER_TARGET:
        raise ValueError(
            f"autoencoder.path={path}: {checkpoint} is a run of {net.get('_target_') if isinstance(net, dict) else net}"
            f", not an autoencoder run (train one with mmdiff train recipe=audio_vae or recipe=video_vae)"
        )
    return net, load_weights(checkpoint, ema=True), checkpoint


def load_codec(path: str | Path) -> nn.Module:
    """The frozen codec that ``path`` names: an mmdiff autoencoder run, one of its checkpoint folders, the copy a
    latent run keeps (``RUN/autoencoder``), or a diffusers autoencoder folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"autoencoder.path={path} does not exist: give an mmdiff autoencoder run (mmdiff train recipe=audio_vae "
            "or recipe=video_vae) or a local diffusers autoencoder folder"
        )
    if (path / CODEC_CONFIG).is_file():
        arguments = json.loads((path / CODEC_CONFIG).read_text())
        return _autoencoder(arguments, load_weights(path / "model.safetensors"), path)
    if (path / "config.json").is_file():
        from .diffusers_codec import DiffusersCodec

        return _frozen(DiffusersCodec(str(path)))
    if path.is_dir() and ((path / "checkpoints").is_dir() or (path / "config.yaml").is_file()):
        arguments, weights, checkpoint = _run_autoencoder(path)
        log.info("autoencoder: %s", checkpoint)
        return _autoencoder(arguments, weights, checkpoint)
    raise ValueError(
        f"autoencoder.path={path}: expected an mmdiff autoencoder run folder (with checkpoints/), a checkpoint folder "
        "of one, or a diffusers autoencoder folder (config.json + safetensors weights)"
    )


def store_codec(source: str | Path, folder: Path) -> None:
    """Copy the codec that ``source`` names into ``folder`` (a latent run's ``autoencoder/``) in a form that
    :func:`load_codec` reads and that needs nothing outside the run."""
    from safetensors.torch import save_file

    source = Path(source).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    if (source / CODEC_CONFIG).is_file():  # already a stored codec (a latent run's copy)
        if source.resolve() != folder.resolve():
            for name in (CODEC_CONFIG, "model.safetensors"):
                shutil.copy2(source / name, folder / name)
        return
    if (source / "config.json").is_file():  # diffusers: its config and safetensors weights, nothing else
        weights = sorted(source.glob("*.safetensors"))
        if not weights:
            raise ValueError(f"autoencoder.path={source}: no .safetensors weights in the folder")
        for file in [source / "config.json", *weights]:
            shutil.copy2(file, folder / file.name)
        return
    arguments, weights, _ = _run_autoencoder(source)
    kept = {k: v.contiguous() for k, v in weights.items() if not k.startswith("discriminator.")}
    save_file(kept, folder / "model.safetensors")
    (folder / CODEC_CONFIG).write_text(json.dumps(arguments, indent=1))


@torch.no_grad()
def encode_in_chunks(codec: nn.Module, x: Tensor, chunk: int = 16) -> Tensor:
    """``codec.encode`` in float32 over batches of at most ``chunk`` samples (bounded memory for large batches)."""
    codec = codec.to(x.device)
    return torch.cat([codec.encode(part.float()) for part in x.split(chunk)])


@torch.no_grad()
def decode_in_chunks(codec: nn.Module, z: Tensor, chunk: int = 16) -> Tensor:
    """``codec.decode`` in float32 over batches of at most ``chunk`` samples."""
    codec = codec.to(z.device)
    return torch.cat([codec.decode(part.float()) for part in z.split(chunk)])
