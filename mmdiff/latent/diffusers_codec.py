"""A Hugging Face diffusers autoencoder in a local folder, used as a latent codec (issue 13).

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models") diffuses in
the latent space of an autoencoder; many such autoencoders ship in the diffusers format (a folder with
``config.json`` naming ``_class_name`` and ``diffusion_pytorch_model.safetensors``). :class:`DiffusersCodec` loads
one from a local folder, never from the hub, and gives it the codec interface of :mod:`mmdiff.latent.codec`
(``latent_channels``, ``encode``, ``decode``, ``latent_shape``, ``media_shape``). Layouts:

- image autoencoders (``AutoencoderKL`` of Stable Diffusion, ``AutoencoderTiny``, ``AutoencoderDC``): images
  ``(B, C, H, W)``, or clips ``(B, C, F, H, W)`` encoded frame by frame (frames folded into the batch); ``H`` and
  ``W`` a multiple of ``2 ** (number of blocks - 1)`` (8 for Stable Diffusion's VAE, 32 for DC-AE f32).
- ``AutoencoderKLTemporalDecoder`` (Stable Video Diffusion): the same per-frame encoder; its decoder mixes frames
  in time, so it is told the clip's frame count.
- causal video VAEs with temporal compression ``t`` (``AutoencoderKLCogVideoX``, ``AutoencoderKLHunyuanVideo``,
  ``AutoencoderKLLTXVideo``, ``AutoencoderKLWan``, ``AutoencoderKLMochi``): clips ``(B, C, 1 + t*k, H, W)`` ->
  ``(B, c, 1 + k, h, w)``: the first frame alone (one image is a 1-frame clip), then ``t`` frames per latent frame.
  Their chunked encoders and decoders narrow ``k`` further: CogVideoX needs ``1 + t*k`` with ``t*k`` a multiple of
  ``lcm(8, 2 t)`` (``1 + 8k`` frames at ``t = 4``), Wan a multiple of ``lcm(4, t)``. (CogVideoX also codes ``8k``
  frames, as ``2k`` latent frames without a lone first frame; refused here so that one rule maps both ways.)
- ``AutoencoderOobleck`` (Stable Audio): waveforms ``(B, channels, samples)`` -> ``(B, c, samples / hop)`` with
  ``hop = prod(downsampling_ratios)`` (2048 for Stable Audio Open); samples a multiple of ``hop``.

Inputs are what each model was trained on: pixels in [-1, 1] for the image and video VAEs (the video adapter's
range), the raw waveform in [-1, 1] for Oobleck (:class:`mmdiff.modalities.audio.WaveformAdapter`). Encoding is
deterministic: the posterior's mode (its mean) for the KL autoencoders, the encoder's output for Tiny and DC. The
model's own ``scaling_factor`` / ``shift_factor`` / ``latents_mean`` / ``latents_std`` are *not* applied: the latent
adapter measures per-channel statistics on the training data itself and stores them with the run, which serves any
codec the same way, whether or not its config carries such constants.

Nothing here runs code from a file: ``config.json`` is JSON, weights load only from safetensors
(``use_safetensors=True``); a folder with only pickle weights (``.bin``, ``.pt``, ``.ckpt``) is refused by name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

_WEIGHTS = "diffusion_pytorch_model"
_PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class _Layout:
    """How one autoencoder maps media shapes to latent shapes.

    ``kind``: ``image`` (per frame; 2-D), ``video`` (causal in time; 3-D) or ``audio`` (1-D). ``space``: the factor
    per spatial side (the hop for audio); ``time``: the temporal factor; ``frame_step``: frames must be
    ``1 + frame_step * k``.
    """

    kind: str
    media_channels: int
    latent_channels: int
    space: int
    time: int = 1
    frame_step: int = 1


def _image_layout(config: dict, model: nn.Module, blocks: str) -> _Layout:
    # one stride-2 downsampling after every block but the last (Encoder of vae.py, EncoderTiny, DCAE's Encoder)
    return _Layout("image", config["in_channels"], config["latent_channels"], 2 ** (len(config[blocks]) - 1))


def _cogvideox_layout(config: dict, model: nn.Module) -> _Layout:
    blocks = len(config["block_out_channels"])
    time = 2 ** min(int(math.log2(config["temporal_compression_ratio"])), blocks - 1)
    # CogVideoX encodes 8 frames at a time (the first chunk takes the remainder) and decodes 2 latent frames at a
    # time; the clip survives the round trip when the latent frame count is odd, as in its 49-frame -> 13 setting.
    step = math.lcm(model.num_sample_frames_batch_size, model.num_latent_frames_batch_size * time)
    return _Layout("video", config["in_channels"], config["latent_channels"], 2 ** (blocks - 1), time, step)


def _hunyuan_layout(config: dict, model: nn.Module) -> _Layout:
    time = config["temporal_compression_ratio"]
    return _Layout(
        "video", config["in_channels"], config["latent_channels"], config["spatial_compression_ratio"], time, time
    )


def _ltx_layout(config: dict, model: nn.Module) -> _Layout:
    time = model.temporal_compression_ratio
    return _Layout(
        "video", config["in_channels"], config["latent_channels"], model.spatial_compression_ratio, time, time
    )


def _wan_layout(config: dict, model: nn.Module) -> _Layout:
    # The model's own spatial ratio is the config's scale_factor_spatial, which need not match the blocks: count them.
    patch = config.get("patch_size") or 1
    time = 2 ** sum(bool(t) for t in config["temperal_downsample"])
    space = 2 ** (len(config["dim_mult"]) - 1) * patch
    # Wan encodes the first frame, then 4 frames at a time, dropping a remainder
    return _Layout("video", config["in_channels"] // patch**2, config["z_dim"], space, time, math.lcm(4, time))


def _mochi_layout(config: dict, model: nn.Module) -> _Layout:
    time = model.temporal_compression_ratio  # its in_channels are Fourier features of the pixels: out_channels it is
    return _Layout(
        "video", config["out_channels"], config["latent_channels"], model.spatial_compression_ratio, time, time
    )


def _oobleck_layout(config: dict, model: nn.Module) -> _Layout:
    # the encoder's output holds mean and scale; the latent is its first half, as wide as the decoder's input
    return _Layout("audio", config["audio_channels"], config["decoder_input_channels"], model.hop_length)


_LAYOUTS = {
    "AutoencoderKL": lambda c, m: _image_layout(c, m, "block_out_channels"),
    "AutoencoderTiny": lambda c, m: _image_layout(c, m, "encoder_block_out_channels"),
    "AutoencoderDC": lambda c, m: _image_layout(c, m, "encoder_block_out_channels"),
    "AutoencoderKLTemporalDecoder": lambda c, m: _image_layout(c, m, "block_out_channels"),
    "AutoencoderKLCogVideoX": _cogvideox_layout,
    "AutoencoderKLHunyuanVideo": _hunyuan_layout,
    "AutoencoderKLLTXVideo": _ltx_layout,
    "AutoencoderKLWan": _wan_layout,
    "AutoencoderKLMochi": _mochi_layout,
    "AutoencoderOobleck": _oobleck_layout,
}
SUPPORTED = tuple(_LAYOUTS)


def _expected(path: Path) -> str:
    return f"expected a diffusers autoencoder folder ({path}/config.json naming _class_name + {_WEIGHTS}.safetensors)"


def _read_folder(path: Path) -> tuple[dict[str, Any], str | None]:
    """``(config, weights variant)`` of a diffusers autoencoder folder, or a one-line error naming what is wrong."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder: {_expected(path)}")
    config_file = path / "config.json"
    if not config_file.is_file():
        hint = ""
        if (path / "model_index.json").is_file() and (path / "vae" / "config.json").is_file():
            hint = f" ({path} is a diffusers pipeline: give its autoencoder, {path / 'vae'})"
        raise ValueError(f"{path} has no config.json: {_expected(path)}{hint}")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{config_file} is not valid JSON ({e})") from None
    name = config.get("_class_name") if isinstance(config, dict) else None
    if name not in _LAYOUTS:
        raise ValueError(
            f"{config_file}: _class_name {name!r} is not a supported diffusers autoencoder; expected one of "
            f"{', '.join(SUPPORTED)}"
        )
    if (path / f"{_WEIGHTS}.safetensors").is_file() or (path / f"{_WEIGHTS}.safetensors.index.json").is_file():
        return config, None
    variants = sorted(f.name[len(_WEIGHTS) + 1 : -len(".safetensors")] for f in path.glob(f"{_WEIGHTS}.*.safetensors"))
    if len(variants) == 1:
        return config, variants[0]  # e.g. diffusion_pytorch_model.fp16.safetensors alone
    if variants:
        raise ValueError(
            f"{path}: several weight variants ({', '.join(variants)}) and no {_WEIGHTS}.safetensors; keep one of them"
        )
    pickles = sorted(f.name for pattern in _PICKLES for f in path.glob(pattern))
    if pickles:
        raise ValueError(
            f"{path}: {pickles[0]} is a pickle weights file, which can run code when loaded; mmdiff loads safetensors "
            f"only: convert it once where you trust it (Class.from_pretrained(folder).save_pretrained(folder))"
        )
    raise ValueError(f"{path} has no {_WEIGHTS}.safetensors: {_expected(path)}")


def _posterior_mode(output: Any) -> Tensor:
    """The deterministic latent of an ``encode`` output: the Gaussian posterior's mode, or Tiny's / DC's latent."""
    if hasattr(output, "latent_dist"):
        return output.latent_dist.mode()
    return output.latents if hasattr(output, "latents") else output.latent


class DiffusersCodec(nn.Module):
    """A frozen diffusers autoencoder from a local folder, as an mmdiff codec (see the module docstring).

    Args:
        path: the autoencoder's folder (``config.json`` + safetensors weights); for a whole pipeline folder, its
            ``vae/`` subfolder. Loaded with ``local_files_only=True``: no network access, ever.
        dtype: the weights' dtype while coding, ``float32`` (default), ``float16`` or ``bfloat16``; inputs are cast
            to it and outputs back to the input's dtype.
        tile: encode and decode large frames (or long waveforms) in overlapping tiles (the model's
            ``enable_tiling()``) to bound memory; shapes are unchanged, values differ slightly at tile seams.

    The codec stays in eval mode (``train()`` does not change it) with gradients off, so dropout never acts and an
    optimizer never sees its weights.
    """

    def __init__(self, path: str, dtype: str = "float32", tile: bool = False):
        super().__init__()
        folder = Path(path).expanduser()
        if dtype not in _DTYPES:
            raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(_DTYPES)}")
        config, variant = _read_folder(folder)
        self.class_name, self.path = config["_class_name"], str(folder)
        import diffusers  # lazily: only a diffusers codec needs it

        try:
            model = getattr(diffusers, self.class_name).from_pretrained(
                folder, use_safetensors=True, local_files_only=True, torch_dtype=_DTYPES[dtype], variant=variant
            )
        except Exception as e:  # diffusers' own errors are long and of many types: one line, the cause chained
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{folder}: diffusers could not load its {self.class_name} ({first})") from e
        if tile:
            if not hasattr(model, "enable_tiling"):
                raise ValueError(f"tile=True: {self.class_name} at {folder} cannot tile")
            model.enable_tiling()
        self.model = model.eval().requires_grad_(False)
        self.layout = _LAYOUTS[self.class_name](dict(model.config), model)
        self.latent_channels = self.layout.latent_channels
        self.media_channels = self.layout.media_channels

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (as loaded, or as set later by ``.to(dtype)``): inputs are cast to it."""
        return self.model.dtype

    def train(self, mode: bool = True) -> DiffusersCodec:
        """Always eval: the codec is frozen (a parent's ``.train()`` must not turn its dropout on)."""
        return super().train(False)

    def extra_repr(self) -> str:
        lay, per = self.layout, self.layout.frame_step // self.layout.time
        frames = f", frames 1 + {lay.frame_step}k -> 1 + {per if per > 1 else ''}k" if lay.kind == "video" else ""
        unit = "sample" if lay.kind == "audio" else "side"
        return f"{self.class_name} at {self.path}: {lay.kind}, /{lay.space} per {unit}{frames}"

    # ---- shapes --------------------------------------------------------------------------------------------------
    def _fit(self, axis: str, size: int, factor: int) -> int:
        """``size / factor``, or a one-line error naming the axis and the nearest sizes that fit."""
        if size < factor or size % factor:
            low = max(factor, size // factor * factor)
            raise ValueError(
                f"{axis} {size} does not fit {self.class_name} at {self.path}: need a multiple of {factor} "
                f"(e.g. {low} or {low + factor})"
            )
        return size // factor

    def _fit_frames(self, frames: int) -> int:
        """Latent frames of a causal video VAE: ``1 + t*k -> 1 + k``, within the model's frame step."""
        step, time = self.layout.frame_step, self.layout.time
        if frames < 1 or (frames - 1) % step:
            low = 1 + max(0, (frames - 1) // step * step)
            raise ValueError(
                f"frames {frames} do not fit {self.class_name} at {self.path}: need 1 + {step}k frames "
                f"(e.g. {low} or {low + step})"
            )
        return 1 + (frames - 1) // time

    def _check_channels(self, shape: tuple[int, ...], channels: int, what: str) -> None:
        if shape[0] != channels:
            raise ValueError(
                f"{what} channels {shape[0]} do not fit {self.class_name} at {self.path}: it takes {channels}"
            )

    def _check_rank(self, shape: tuple[int, ...], latent: bool) -> None:
        kind = self.layout.kind
        ranks = {"image": (3, 4), "video": (4,), "audio": (2,)}[kind]
        if len(shape) not in ranks:
            names = {"image": "(C, H, W) or (C, F, H, W)", "video": "(C, F, H, W)", "audio": "(channels, samples)"}
            raise ValueError(
                f"{'latent' if latent else 'media'} shape {shape} does not fit {self.class_name} at {self.path}: "
                f"it takes per-sample {names[kind]}"
            )

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample media shape (no batch dim) -> the latent shape :meth:`encode` gives it; a size that does not
        fit raises a one-line ValueError naming the axis and sizes that do."""
        shape, lay = tuple(int(s) for s in shape), self.layout
        self._check_rank(shape, latent=False)
        self._check_channels(shape, lay.media_channels, "media")
        if lay.kind == "audio":
            return (lay.latent_channels, self._fit("samples", shape[1], lay.space))
        height, width = self._fit("height", shape[-2], lay.space), self._fit("width", shape[-1], lay.space)
        if len(shape) == 3:
            return (lay.latent_channels, height, width)
        frames = self._fit_frames(shape[1]) if lay.kind == "video" else shape[1]
        return (lay.latent_channels, frames, height, width)

    def media_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample latent shape (no batch dim) -> the media shape :meth:`decode` gives it."""
        shape, lay = tuple(int(s) for s in shape), self.layout
        self._check_rank(shape, latent=True)
        self._check_channels(shape, lay.latent_channels, "latent")
        if min(shape) < 1:
            raise ValueError(f"latent shape {shape} has an empty axis")
        if lay.kind == "audio":
            return (lay.media_channels, shape[1] * lay.space)
        height, width = shape[-2] * lay.space, shape[-1] * lay.space
        if len(shape) == 3:
            return (lay.media_channels, height, width)
        frames = 1 + (shape[1] - 1) * lay.time if lay.kind == "video" else shape[1]
        return (lay.media_channels, frames, height, width)

    # ---- coding --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Media ``(B, C, *S)`` -> latent ``(B, latent_channels, *s)``: the posterior's mode, no scaling."""
        self.latent_shape(tuple(x.shape[1:]))  # sizes that do not fit are named before the model sees them
        folded = self.layout.kind == "image" and x.ndim == 5
        b, frames = x.shape[0], x.shape[2] if folded else 1
        h = x.transpose(1, 2).flatten(0, 1) if folded else x  # (B * F, C, H, W): frames as images
        z = _posterior_mode(self.model.encode(h.to(self.dtype)))
        if folded:
            z = z.unflatten(0, (b, frames)).transpose(1, 2)  # (B, c, F, h, w)
        return z.to(x.dtype)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Latent ``(B, latent_channels, *s)`` -> media ``(B, C, *S)`` (pixels or samples in about [-1, 1])."""
        self.media_shape(tuple(z.shape[1:]))
        folded = self.layout.kind == "image" and z.ndim == 5
        b, frames = z.shape[0], z.shape[2] if folded else 1
        h = z.transpose(1, 2).flatten(0, 1) if folded else z  # (B * F, c, h, w)
        extra: dict[str, Any] = {}
        if self.class_name == "AutoencoderKLTemporalDecoder":
            extra["num_frames"] = frames  # its decoder mixes the frames of each clip in time
        if self.class_name == "AutoencoderKLLTXVideo" and self.model.config.get("timestep_conditioning"):
            extra["temb"] = torch.zeros(b, device=z.device, dtype=self.dtype)  # decode clean latents (t = 0)
        x = self.model.decode(h.to(self.dtype), **extra).sample
        if folded:
            x = x.unflatten(0, (b, frames)).transpose(1, 2)  # (B, C, F, H, W)
        return x.to(z.dtype)
