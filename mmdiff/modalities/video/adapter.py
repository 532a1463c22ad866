"""The video adapter: RGB clips <-> tensors in [-1, 1], mp4/GIF files and frame-grid previews, known-frame conditions.

The core sees ``x (B, 3, frames, H, W)``. The network is also given known frames: ``concat = [x0 * mask, mask]``
(``(B, 4, frames, H, W)``), where ``mask`` marks frames given as input. Training draws, per sample, no known frames
(plain generation), the first frame (image-to-video), or the first few (prediction / extension), so one model does all
of them; at generation the same frames are also kept exactly by the sampler (``keep=(start, end)`` in frames).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...core.noise import SharedNoise, draw
from ...modality import ModalityAdapter

#: Channels of the known-frame condition: RGB of the known frames and the mask.
CONCAT_CHANNELS = 4


class VideoAdapter(ModalityAdapter):
    """Video modality adapter (see :class:`mmdiff.modality.ModalityAdapter`).

    Args:
        num_frames: default clip length in frames (generation; training takes the data's).
        resolution: ``(H, W)`` of the clips.
        fps: frame rate of written files.
        known_frames: probability during training that a sample gets known frames as input (0 disables).
        max_known: at most this many leading frames are known (at least 1 when any are).
        gif: also write a GIF beside each mp4.
        frame_noise_share: the correlation of the noise of a clip's frames, in training and generation (PYoCo's mixed
            noise prior, Ge et al. 2023; :class:`~mmdiff.core.noise.SharedNoise`): 0 is white noise; with, say, 0.5
            half of each pixel's noise variance is the same in every frame, so the frames start out agreeing on what
            stays put (colours, background) and the network sees their differences (motion) through less noise.
    """

    def __init__(
        self,
        num_frames: int = 16,
        resolution: tuple[int, int] = (32, 32),
        fps: float = 8.0,
        known_frames: float = 0.5,
        max_known: int = 4,
        gif: bool = True,
        frame_noise_share: float = 0.0,
    ):
        if not 0.0 <= known_frames <= 1.0:
            raise ValueError(f"known_frames is a probability in [0, 1], got {known_frames}")
        if not 0.0 <= frame_noise_share < 1.0:
            raise ValueError(f"adapter.frame_noise_share is a correlation in [0, 1), got {frame_noise_share}")
        self.num_frames, self.resolution, self.fps = num_frames, tuple(resolution), fps
        self.known_frames, self.max_known, self.gif = known_frames, max_known, gif
        self.noise_prior = SharedNoise(dims=(2,), share=frame_noise_share) if frame_noise_share else None

    # ---- known frames ------------------------------------------------------------------------------------------
    def known_concat(self, x0: Tensor, mask: Tensor) -> Tensor:
        """``[x0 * mask, mask]`` as ``(B, 4, F, H, W)`` for ``x0 (B, 3, F, H, W)`` and ``mask`` broadcastable to it."""
        mask = mask.to(x0.dtype).expand(x0.shape[0], 1, *x0.shape[2:])
        return torch.cat([x0 * mask, mask], dim=1)

    def known_mask(self, x0: Tensor, generator: Any = None) -> Tensor:
        """Per sample: with probability ``known_frames`` the first ``k ~ U{1..max_known}`` frames are known."""
        b, frames = x0.shape[0], x0.shape[2]
        u = draw("uniform", (b, 2), generator, x0.device)  # (B, 2): whether, and how many
        count = torch.where(u[:, 0] < self.known_frames, 1 + (u[:, 1] * min(self.max_known, frames - 1)).long(), 0)
        mask = torch.arange(frames, device=x0.device)[None] < count[:, None]  # (B, F)
        return mask.float().reshape(b, 1, frames, 1, 1)

    # ---- the adapter protocol ----------------------------------------------------------------------------------
    def encode(self, batch: dict[str, Any], generator: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        video = batch["video"]  # (B, 3, F, H, W) in [0, 1]
        if video.ndim != 5 or video.shape[1] != 3 or tuple(video.shape[3:]) != self.resolution:
            raise ValueError(
                f"video batch must be (B, 3, frames, {self.resolution[0]}, {self.resolution[1]}) "
                f"in [0, 1], got {tuple(video.shape)}"
            )
        x0 = video.float() * 2 - 1
        return x0, self.training_known(x0, generator)

    def decode(self, x: Tensor) -> list[Tensor]:
        return list(((x.float().clamp(-1, 1) + 1) / 2).cpu())  # each (3, F, H, W) in [0, 1]

    def sample_shape(self, length: float | None = None) -> tuple[int, ...]:
        if length is None:
            return (3, self.num_frames, *self.resolution)
        if float(length) != int(length) or int(length) < 1:
            raise ValueError(f"length is a whole number of frames >= 1, got {length}")
        return (3, int(length), *self.resolution)

    def write(self, items: list[Tensor], directory: Path, prefix: str = "sample") -> list[Path]:
        from .io import write_gif, write_mp4

        directory = Path(directory)
        paths = []
        for i, clip in enumerate(items):
            paths.append(write_mp4(directory / f"{prefix}_{i:03d}.mp4", clip, self.fps))
            if self.gif:
                write_gif(directory / f"{prefix}_{i:03d}.gif", clip, self.fps)
        return paths

    def preview(self, items: list[Tensor], path: Path, captions: list[str] | None = None, min_side: int = 64) -> Path:
        """A PNG grid: one row per clip headed by its caption, up to 8 frames; small frames are enlarged (nearest) to
        ``min_side`` px."""
        from .io import write_frame_grid

        scale = max(1, -(-min_side // min(self.resolution)))  # ceil
        big = [
            torch.nn.functional.interpolate(clip.transpose(0, 1), scale_factor=scale).transpose(0, 1) for clip in items
        ]  # (3, F, H * scale, W * scale)
        return write_frame_grid(path, big, max_frames=8, captions=captions)

    # ---- editing -----------------------------------------------------------------------------------------------
    def load_init(self, source: str | Path | Tensor, length: float | None = None) -> Tensor:
        """A video file (or a ``(3, F, H, W)`` clip in [0, 1], or one ``(3, H, W)`` image) -> ``(3, frames, H, W)``
        in [-1, 1], cut or extended (last frame repeated) to ``length`` frames (default: the input's length, or
        ``num_frames`` for a file or an image)."""
        if isinstance(source, (str, Path)):
            from .io import read_clip

            source = read_clip(
                source, int(length or self.num_frames), self.fps, self.resolution, start=0.0, short_policy="pad"
            )
        clip = torch.as_tensor(source, dtype=torch.float32)
        if clip.ndim == 3:  # one image: image-to-video
            clip = clip[:, None]
        frames = int(length or (clip.shape[1] if clip.shape[1] > 1 else self.num_frames))
        if clip.shape[1] < frames:
            clip = torch.cat([clip, clip[:, -1:].expand(-1, frames - clip.shape[1], -1, -1)], dim=1)
        return clip[:, :frames] * 2 - 1

    def known_conditions(self, known: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """The known-frame input ``concat (B, 4, F, H, W)`` for frames ``known (B, 3, F, H, W)`` in [-1, 1] that are
        given where ``mask`` is 1: the network was trained to continue such frames (image-to-video, prediction)."""
        return {"concat": self.known_concat(known, mask.to(known.device))}

    def range_mask(self, shape: tuple[int, ...], start: float, end: float) -> Tensor:
        """``(1, 1, F, 1, 1)``: 1 on frames ``start <= f < end``."""
        if not 0 <= start < end:
            raise ValueError(f"keep range must satisfy 0 <= start < end (frames), got ({start}, {end})")
        f = torch.arange(shape[2])
        return ((f >= start) & (f < end)).float().reshape(1, 1, -1, 1, 1)
