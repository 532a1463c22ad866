"""A sample made of several tensors, seen by the core as one flat vector per sample.

A clip with its soundtrack is two tensors of different shapes and ranks: video ``(3, F, H, W)`` and a log-mel
``(M, T)``. The samplers, guidance, editing and the training loss only ever use per-sample scalar coefficients
(``x' = a x + b D``), elementwise arithmetic and per-sample noise, so they are exact on any fixed arrangement of the
numbers of a sample. :class:`Packing` is that arrangement: named parts, each ``(B, *shape)``, laid end to end as
``(B, N)``; the network unpacks them, and a mask over some parts (one modality known, the other generated) is a packed
tensor like any other. Every sampler therefore samples a multi-tensor state unchanged, and the denoiser contract's
simple case (one tensor) stays as it is: this is the "packed view" of DESIGN.md.

Per-element noise levels are deliberately not needed: a part given clean (video-to-audio) is known-part conditioning
(the network gets it as an input, the sampler keeps it with a mask), as image-to-video already is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


class Packing:
    """Named per-sample shapes laid end to end: ``pack({name: (B, *shape)}) -> (B, N)`` and back.

    Args:
        shapes: ``{name: per-sample shape}`` in packing order (a dict keeps its order).
    """

    def __init__(self, shapes: Mapping[str, Sequence[int]]):
        if not shapes:
            raise ValueError("Packing: needs at least one named part")
        self.shapes = {name: tuple(int(n) for n in shape) for name, shape in shapes.items()}
        for name, shape in self.shapes.items():
            if any(n < 1 for n in shape):
                raise ValueError(f"Packing: part {name!r} has shape {shape}; every size must be >= 1")
        self.sizes = {name: math.prod(shape) for name, shape in self.shapes.items()}
        self.size = sum(self.sizes.values())  # N

    def __repr__(self) -> str:
        return f"Packing({self.shapes})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Packing) and list(self.shapes.items()) == list(other.shapes.items())

    def pack(self, parts: Mapping[str, Tensor]) -> Tensor:
        """``{name: (B, *shape)}`` -> ``(B, N)``; every part must be given with its shape."""
        if set(parts) != set(self.shapes):
            raise ValueError(f"Packing.pack: expected the parts {list(self.shapes)}, got {list(parts)}")
        flat = []
        for name, shape in self.shapes.items():
            part = parts[name]
            if tuple(part.shape[1:]) != shape:
                raise ValueError(f"Packing.pack: part {name!r} must be (B, {shape}), got {tuple(part.shape)}")
            flat.append(part.reshape(part.shape[0], -1))
        return torch.cat(flat, dim=1)

    def unpack(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, N)`` -> ``{name: (B, *shape)}`` (views of ``x``)."""
        if x.ndim != 2 or x.shape[1] != self.size:
            raise ValueError(f"Packing.unpack: expected (B, {self.size}), got {tuple(x.shape)}")
        pieces = x.split(list(self.sizes.values()), dim=1)
        return {name: piece.reshape(x.shape[0], *shape) for (name, shape), piece in zip(self.shapes.items(), pieces)}

    def mask(self, values: Mapping[str, float | Tensor], default: float = 0.0) -> Tensor:
        """A ``(1, N)`` float mask: each named part filled with its value (a number, or a tensor broadcastable to
        ``(1, *shape)``), the others with ``default``. ``mask({"video": 1})`` marks the video part as known."""
        unknown = sorted(set(values) - set(self.shapes))
        if unknown:
            raise ValueError(f"Packing.mask: unknown part(s) {unknown}; parts: {list(self.shapes)}")
        parts = {
            name: torch.as_tensor(values.get(name, default), dtype=torch.float32).expand(1, *shape)
            for name, shape in self.shapes.items()
        }
        return self.pack(parts)
