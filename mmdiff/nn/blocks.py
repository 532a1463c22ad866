"""U-Net building blocks written once for 1, 2 and 3 dimensions.

Every block takes ``dims`` (1: audio ``(B, C, T)``; 2: images ``(B, C, H, W)``; 3: video ``(B, C, F, H, W)``) and
picks ``nn.Conv{dims}d``; attention flattens all positions and runs ``F.scaled_dot_product_attention``. The 1-D
and 3-D U-Nets are configurations of the same classes, not copies (the design follows Ho et al. 2020 and
Dhariwal & Nichol 2021, "Diffusion Models Beat GANs": residual blocks with a scale/shift time embedding,
self-attention at low resolutions).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv1d`` / ``Conv2d`` / ``Conv3d`` for ``dims`` 1 / 2 / 3."""
    if dims not in _CONV:
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
    return _CONV[dims](*args, **kwargs)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's weights and bias so a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` that divides ``channels``."""
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels)


class ResBlock(nn.Module):
    """``norm -> SiLU -> conv -> scale/shift by the embedding -> norm -> SiLU -> dropout -> conv``, plus a skip.

    ``x (B, in_ch, *S)``, ``emb (B, emb_dim)`` -> ``(B, out_ch, *S)``. The second conv starts at zero.
    """

    def __init__(self, dims: int, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0, kernel: int = 3):
        super().__init__()
        self.dims = dims
        self.norm1, self.conv1 = group_norm(in_ch), conv_nd(dims, in_ch, out_ch, kernel, padding=kernel // 2)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = group_norm(out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_init(conv_nd(dims, out_ch, out_ch, kernel, padding=kernel // 2))
        self.skip = conv_nd(dims, in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb)).reshape(emb.shape[0], -1, *([1] * self.dims)).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class Attention(nn.Module):
    """Multi-head self-attention over all positions of ``x (B, C, *S)`` (``N = prod(S)`` tokens), residual."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: {channels} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.out = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, *spatial = x.shape
        h = self.norm(x).reshape(b, c, -1)  # (B, C, N)
        q, k, v = self.qkv(h).reshape(b, 3, self.heads, c // self.heads, -1).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, C/heads)
        out = out.transpose(-1, -2).reshape(b, c, -1)
        return x + self.out(out).reshape(b, c, *spatial)


class Downsample(nn.Module):
    """Strided convolution by ``factor`` per axis (e.g. 2 for audio, ``(1, 2, 2)`` for space-only video)."""

    def __init__(self, dims: int, channels: int, factor: int | Sequence[int] = 2):
        super().__init__()
        factor = tuple(factor) if isinstance(factor, Sequence) else (factor,) * dims
        kernel = tuple(3 if f > 1 else 1 for f in factor)
        self.conv = conv_nd(dims, channels, channels, kernel, stride=factor, padding=tuple(k // 2 for k in kernel))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by ``factor`` per axis, then a convolution."""

    def __init__(self, dims: int, channels: int, factor: int | Sequence[int] = 2):
        super().__init__()
        self.factor = tuple(factor) if isinstance(factor, Sequence) else (factor,) * dims
        self.conv = conv_nd(dims, channels, channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.factor, mode="nearest"))


def checkpointed(module: nn.Module, x: Tensor, emb: Tensor, enabled: bool) -> Tensor:
    """Run ``module(x, emb)``, recomputing its activations in the backward pass when ``enabled`` (saves memory)."""
    if enabled and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(module, x, emb, use_reentrant=False)
    return module(x, emb)
