"""U-Net building blocks written once for 1, 2 and 3 dimensions.

Every block takes ``dims`` (1: audio ``(B, C, T)``; 2: images ``(B, C, H, W)``; 3: video ``(B, C, F, H, W)``) and
picks ``nn.Conv{dims}d``; attention flattens all positions and runs ``F.scaled_dot_product_attention``. The 1-D
and 3-D U-Nets are configurations of the same classes, not copies (the design follows Ho et al. 2020 and
Dhariwal & Nichol 2021, "Diffusion Models Beat GANs": residual blocks with a scale/shift time embedding,
self-attention at low resolutions).
"""

from __future__ import annotations

import math
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


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over each frame of ``x (B, C, F, H, W)`` on its own, so that frames do not share statistics and a
    video network whose temporal parts are still zero acts exactly as an image network on every frame."""

    def forward(self, x: Tensor) -> Tensor:
        b, c, f, h, w = x.shape
        frames = super().forward(x.transpose(1, 2).reshape(b * f, c, h, w))
        return frames.reshape(b, f, c, h, w).transpose(1, 2)


_AVG_POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}


def group_norm(channels: int, groups: int = 32, per_frame: bool = False) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` that divides ``channels`` (per frame for video).

    With as many groups as channels this is instance normalisation: each channel's amplitude is scaled away on every
    sample (or frame), which a narrow autoencoder pays for in colour (see :class:`mmdiff.nn.Autoencoder`'s
    ``norm_groups``)."""
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return FrameGroupNorm(g, channels) if per_frame else nn.GroupNorm(g, channels)


class CausalConv3d(nn.Module):
    """A same-size ``Conv3d`` over ``(B, C, F, H, W)`` that pads the frame axis only on the past side (``k - 1``
    frames before, none after), so output frame ``f`` depends on input frames ``<= f`` only (as in causal video VAEs,
    e.g. MAGVIT-v2, Yu et al. 2024). ``kernel`` is an int or ``(k_t, k_h, k_w)``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int | Sequence[int] = 3):
        super().__init__()
        kt, kh, kw = tuple(kernel) if isinstance(kernel, Sequence) else (kernel,) * 3
        self.pad = (kw // 2, kw // 2, kh // 2, kh // 2, kt - 1, 0)  # F.pad order: W, H, then frames (past only)
        self.conv = nn.Conv3d(in_ch, out_ch, (kt, kh, kw))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, self.pad))


class SpaceTimeConv(nn.Module):
    """A factorised (2+1)-D convolution for video ``(B, C, F, H, W)``: a spatial ``1 x k x k`` convolution, then a
    temporal ``k x 1 x 1`` convolution added as a residual that starts at zero (Make-A-Video, Singer et al. 2022;
    "pseudo-3D"), so a fresh block acts frame by frame and learns motion on top. With ``causal`` the temporal
    convolution pads only on the past side (:class:`CausalConv3d`; its weights are then under ``temporal.conv.``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, causal: bool = False):
        super().__init__()
        self.spatial = nn.Conv3d(in_ch, out_ch, (1, kernel, kernel), padding=(0, kernel // 2, kernel // 2))
        temporal = (
            CausalConv3d(out_ch, out_ch, (kernel, 1, 1))
            if causal
            else nn.Conv3d(out_ch, out_ch, (kernel, 1, 1), padding=(kernel // 2, 0, 0))
        )
        self.temporal = zero_init(temporal)

    def forward(self, x: Tensor) -> Tensor:
        h = self.spatial(x)
        return h + self.temporal(h)


def conv_block(
    dims: int, in_ch: int, out_ch: int, kernel: int = 3, factorized: bool = False, causal: bool = False
) -> nn.Module:
    """A same-size convolution: :class:`SpaceTimeConv` for factorised video, else ``Conv{dims}d``; ``causal``
    (``dims=3`` only) pads the frame axis on the past side only (:class:`CausalConv3d`)."""
    if causal and dims != 3:
        raise ValueError(f"causal convolutions are over the frames of video and need dims=3, got {dims}")
    if factorized:
        if dims != 3:
            raise ValueError(f"factorised space-time convolutions need dims=3, got {dims}")
        return SpaceTimeConv(in_ch, out_ch, kernel, causal)
    if causal:
        return CausalConv3d(in_ch, out_ch, kernel)
    return conv_nd(dims, in_ch, out_ch, kernel, padding=kernel // 2)


class ResBlock(nn.Module):
    """``norm -> SiLU -> conv -> scale/shift by the embedding -> norm -> SiLU -> dropout -> conv``, plus a skip.

    ``x (B, in_ch, *S)``, ``emb (B, emb_dim)`` -> ``(B, out_ch, *S)``; for video ``emb`` may be ``(B, F, emb_dim)``,
    one per frame (``UNet(frame_embedding=True)``). The second conv starts at zero. With
    ``factorized`` (video) both convolutions are :class:`SpaceTimeConv` and the norms work per frame. ``emb_dim=0``
    builds a block without an embedding (the autoencoder's; ``emb`` is then ignored). ``causal`` (video): per-frame
    norms and convolutions that pad the frame axis on the past side only (see :func:`conv_block`). ``frame_norm``
    (factorised video): False normalises over the whole clip instead of each frame. ``norm_groups``: at most this
    many GroupNorm groups (see :func:`group_norm`).
    """

    def __init__(
        self,
        dims: int,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        dropout: float = 0.0,
        kernel: int = 3,
        factorized: bool = False,
        causal: bool = False,
        frame_norm: bool = True,
        norm_groups: int = 32,
    ):
        super().__init__()
        self.dims = dims
        per_frame = causal or (factorized and frame_norm)
        self.norm1 = group_norm(in_ch, norm_groups, per_frame=per_frame)
        self.conv1 = conv_block(dims, in_ch, out_ch, kernel, factorized, causal)
        self.emb = nn.Linear(emb_dim, 2 * out_ch) if emb_dim else None
        self.norm2 = group_norm(out_ch, norm_groups, per_frame=per_frame)
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_init(conv_block(dims, out_ch, out_ch, kernel, factorized, causal))
        self.skip = conv_nd(dims, in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        h = self.norm2(self.conv1(F.silu(self.norm1(x))))
        if self.emb is not None:
            film = self.emb(F.silu(emb))  # (B, 2 out_ch), or (B, F, 2 out_ch) with a per-frame embedding
            if film.dim() == 3:  # video, one scale and shift per frame: (B, 2 out_ch, F, 1, 1)
                film = film.transpose(1, 2)[..., None, None]
            else:
                film = film.reshape(emb.shape[0], -1, *([1] * self.dims))
            scale, shift = film.chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class Attention(nn.Module):
    """Multi-head self-attention over all positions of ``x (B, C, *S)`` (``N = prod(S)`` tokens), residual."""

    def __init__(self, channels: int, heads: int = 4, norm_groups: int = 32):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: {channels} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = group_norm(channels, norm_groups)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.out = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, *spatial = x.shape
        h = self.norm(x).reshape(b, c, -1)  # (B, C, N)
        q, k, v = self.qkv(h).reshape(b, 3, self.heads, c // self.heads, -1).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, C/heads)
        out = out.transpose(-1, -2).reshape(b, c, -1)
        return x + self.out(out).reshape(b, c, *spatial)


class SpatialAttention(Attention):
    """Self-attention within each frame of ``x (B, C, F, H, W)``: ``H * W`` tokens per frame."""

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, f, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * f, c, h, w)  # (B*F, C, H, W)
        return super().forward(frames).reshape(b, f, c, h, w).transpose(1, 2)


class TemporalAttention(nn.Module):
    """Self-attention across frames at each pixel of ``x (B, C, F, H, W)``, with a learned relative-position bias
    per head (Shaw et al. 2018; as in Video Diffusion Models, Ho et al. 2022). Offsets beyond ``max_distance`` share
    the last bias, so clips longer than the training ones still work. Starts as the identity (zero output).
    ``causal``: each frame attends to itself and earlier frames only, and the norm works per frame, so output frame
    ``f`` depends on frames ``<= f`` only."""

    def __init__(
        self, channels: int, heads: int = 4, max_distance: int = 32, causal: bool = False, norm_groups: int = 32
    ):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: {channels} channels do not split into {heads} heads")
        self.heads, self.max_distance, self.causal = heads, max_distance, causal
        self.norm = group_norm(channels, norm_groups, per_frame=causal)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = zero_init(nn.Linear(channels, channels))
        self.bias = nn.Embedding(2 * max_distance + 1, heads)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, f, h, w = x.shape
        tokens = self.norm(x).permute(0, 3, 4, 2, 1).reshape(b * h * w, f, c)  # (B*H*W, F, C)
        q, k, v = self.qkv(tokens).reshape(b * h * w, f, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        pos = torch.arange(f, device=x.device)
        offset = (pos[None, :] - pos[:, None]).clamp(-self.max_distance, self.max_distance) + self.max_distance
        bias = self.bias(offset).permute(2, 0, 1).to(q.dtype)  # (heads, F, F)
        if self.causal:  # key frame > query frame: not attended to
            bias = bias.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B*H*W, heads, F, C/heads)
        out = self.out(out.transpose(1, 2).reshape(b * h * w, f, c))
        return x + out.reshape(b, h, w, f, c).permute(0, 4, 3, 1, 2)


class CrossAttention(nn.Module):
    """Attention from every position of ``x (B, C, *S)`` to the tokens of a condition ``context (B, L, D)`` (text),
    residual, as in the latent diffusion U-Net (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
    Diffusion Models"). ``context_mask (B, L)`` is True on real tokens; padding is not attended to.

    Each query attends to the text on its own (softmax over the ``L`` keys), so flattening all positions is exactly
    "every frame's tokens attend to the text" for video; with ``per_frame`` the norm also works per frame, as in the
    factorised video network. The output layer starts at zero: a network that gets no context, or a fresh one,
    behaves as before. Without ``context`` the block is the identity.
    """

    takes_context = True

    def __init__(self, channels: int, context_dim: int, heads: int = 4, per_frame: bool = False, norm_groups: int = 32):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: {channels} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = group_norm(channels, norm_groups, per_frame=per_frame)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.out = zero_init(nn.Linear(channels, channels))

    def forward(
        self, x: Tensor, emb: Tensor | None = None, context: Tensor | None = None, context_mask: Tensor | None = None
    ) -> Tensor:
        if context is None:
            return x
        b, c, *spatial = x.shape
        d = c // self.heads
        h = self.norm(x).reshape(b, c, -1).transpose(1, 2)  # (B, N, C)
        q = self.q(h).reshape(b, -1, self.heads, d).transpose(1, 2)  # (B, heads, N, d)
        k, v = self.kv(context.to(h.dtype)).reshape(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)  # (B, heads, L, d)
        mask = None
        if context_mask is not None:
            mask = context_mask.bool().clone()
            mask[:, 0] = True  # never a row with nothing to attend to (softmax over no keys is NaN)
            mask = mask[:, None, None, :]  # (B, 1, 1, L)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, N, d)
        out = self.out(out.transpose(1, 2).reshape(b, -1, c))  # (B, N, C)
        return x + out.transpose(1, 2).reshape(b, c, *spatial)


class CrossModalAttention(nn.Module):
    """Attention from every position of one stream ``x (B, C, T, *S)`` to the positions of another stream
    ``other (B, D, T', *S')`` that are close in time, residual: the coupling of a joint audio-video network.

    Axis 2 of both is time and both span the same clip of ``span`` time units (video frames): position ``i`` of
    ``x`` covers ``[i, i + 1) * span / T`` and key ``j`` covers ``[j, j + 1) * span / T'``. A query attends to the
    keys whose intervals, widened by ``window`` units on each side, overlap its own, so every query has a key and
    nothing far away in time is mixed in (MM-Diffusion, Ruan et al. 2023, couples its two U-Nets by windowed
    cross-modal attention; here the window is fixed and centred instead of randomly shifted). Tokens are
    normalised per position (LayerNorm), so frames never share statistics. The output layer starts at zero: a fresh
    joint network is the two single-modality networks side by side.

    ``time_bias``: a learned relative-time bias, ``-slope_h * gap`` per head, where ``gap`` is the time between the two
    intervals (0 when they overlap). The keys carry no position, so without it a query cannot tell its own frame from
    the neighbours the window lets in, and a bounce is heard anywhere in the window. The slopes start geometric
    (``2^-1 .. 2^3`` per frame), so heads range from broad to sharp (ALiBi, Press et al. 2022, "Train Short, Test
    Long", with learned slopes); the bias is a function of time alone, so it holds at any level and clip length.

    ``qk_norm``: queries and keys are unit vectors times a learned per-head scale (starting at 10), so attention can
    pick positions out from the start (QKNorm, Henry et al. 2020). With plain dot products a fresh coupling attends
    evenly, and a small object is a few of the hundreds of positions it averages over: measured on the sounding
    shapes, the audio's attention to the video stayed at its maximal entropy through training, and its output did not
    depend on the clip.
    """

    def __init__(
        self,
        channels: int,
        other_channels: int,
        heads: int = 4,
        window: float = 1.0,
        time_bias: bool = False,
        qk_norm: bool = False,
    ):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: {channels} channels do not split into {heads} heads")
        if window < 0:
            raise ValueError(f"cross-modal attention window must be >= 0 time units, got {window}")
        self.heads, self.window = heads, float(window)
        self.norm = nn.LayerNorm(channels)
        self.other_norm = nn.LayerNorm(other_channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(other_channels, 2 * channels)
        self.out = zero_init(nn.Linear(channels, channels))
        # softplus^-1 of the starting slopes (per time unit), one per head
        slopes = torch.logspace(-1, 3, heads, base=2.0) if heads > 1 else torch.tensor([1.0])
        self.slope = nn.Parameter(torch.log(torch.expm1(slopes))) if time_bias else None
        self.qk_scale = nn.Parameter(torch.full((heads, 1, 1), math.log(10.0))) if qk_norm else None  # log scale

    @staticmethod
    def time_gap(steps: int, other_steps: int, span: float, device) -> Tensor:
        """``(T, T')``: the time between query interval ``i`` and key interval ``j``, negative where they overlap."""
        dq, dk = span / steps, span / other_steps
        tq = (torch.arange(steps, device=device, dtype=torch.float32) + 0.5) * dq  # (T,) interval centres
        tk = (torch.arange(other_steps, device=device, dtype=torch.float32) + 0.5) * dk  # (T',)
        return (tq[:, None] - tk[None, :]).abs() - (dq + dk) / 2

    def time_mask(self, steps: int, other_steps: int, rest: int, other_rest: int, span: float, device) -> Tensor:
        """``(T * rest, T' * other_rest)`` bool: True where a query may attend to a key (tokens are time-major)."""
        near = self.time_gap(steps, other_steps, span, device) < self.window  # (T, T')
        return near.repeat_interleave(rest, dim=0).repeat_interleave(other_rest, dim=1)

    def attention_bias(
        self, steps: int, other_steps: int, rest: int, other_rest: int, span: float, device, dtype
    ) -> Tensor:
        """The mask as an additive bias, ``(heads, N, N')``: ``-slope_h * gap`` inside the window, ``-inf`` outside."""
        gap = self.time_gap(steps, other_steps, span, device)  # (T, T')
        bias = -F.softplus(self.slope)[:, None, None] * gap.clamp(min=0)  # (heads, T, T')
        bias = bias.masked_fill(~(gap < self.window), float("-inf"))  # the window of time_mask
        return bias.repeat_interleave(rest, dim=1).repeat_interleave(other_rest, dim=2).to(dtype)  # (heads, N, N')

    def forward(self, x: Tensor, other: Tensor, span: float) -> Tensor:
        b, c, steps, *spatial = x.shape
        other_steps = other.shape[2]
        d = c // self.heads
        h = self.norm(x.reshape(b, c, -1).transpose(1, 2))  # (B, N, C), time-major positions
        o = self.other_norm(other.reshape(b, other.shape[1], -1).transpose(1, 2).to(h.dtype))  # (B, N', D)
        q = self.q(h).reshape(b, -1, self.heads, d).transpose(1, 2)  # (B, heads, N, d)
        k, v = self.kv(o).reshape(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)  # (B, heads, N', d)
        rest, other_rest = h.shape[1] // steps, o.shape[1] // other_steps
        if self.slope is None:
            mask = self.time_mask(steps, other_steps, rest, other_rest, span, x.device)  # (N, N')
        else:
            mask = self.attention_bias(steps, other_steps, rest, other_rest, span, x.device, q.dtype)  # (heads, N, N')
        scale = None
        if self.qk_scale is not None:  # unit queries and keys, the scale learned per head
            q, k, scale = F.normalize(q, dim=-1) * self.qk_scale.exp().to(q.dtype), F.normalize(k, dim=-1), 1.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)  # (B, heads, N, d)
        out = self.out(out.transpose(1, 2).reshape(b, -1, c))  # (B, N, C)
        return x + out.transpose(1, 2).reshape(b, c, steps, *spatial)


class Downsample(nn.Module):
    """Strided convolution by ``factor`` per axis (e.g. 2 for audio, ``(1, 2, 2)`` for space-only video).

    ``shortcut``: add the input average-pooled by ``factor`` (sizes must be multiples of it), the parameter-free
    path of DC-AE's residual autoencoding (Chen et al. 2024, "Deep Compression Autoencoder for Efficient
    High-Resolution Diffusion Models": space-to-channel, then averaging the channel groups, which for a block that
    keeps its width is the average pool), so the convolution learns a residual on a path that already keeps the
    coarse content."""

    def __init__(self, dims: int, channels: int, factor: int | Sequence[int] = 2, shortcut: bool = False):
        super().__init__()
        factor = tuple(factor) if isinstance(factor, Sequence) else (factor,) * dims
        kernel = tuple(3 if f > 1 else 1 for f in factor)
        self.conv = conv_nd(dims, channels, channels, kernel, stride=factor, padding=tuple(k // 2 for k in kernel))
        self.pool = _AVG_POOL[dims](factor) if shortcut else None

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        out = self.conv(x)
        return out if self.pool is None else out + self.pool(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by ``factor`` per axis, then a convolution (factorised for video; ``causal``:
    see :func:`conv_block`). ``shortcut``: add the upsampled input itself (DC-AE's channel-to-space shortcut for a
    block that keeps its width; see :class:`Downsample`)."""

    def __init__(
        self,
        dims: int,
        channels: int,
        factor: int | Sequence[int] = 2,
        factorized: bool = False,
        causal: bool = False,
        shortcut: bool = False,
    ):
        super().__init__()
        self.factor = tuple(factor) if isinstance(factor, Sequence) else (factor,) * dims
        self.conv = conv_block(dims, channels, channels, 3, factorized, causal)
        self.shortcut = shortcut

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        up = F.interpolate(x, scale_factor=self.factor, mode="nearest")
        return self.conv(up) + up if self.shortcut else self.conv(up)


def checkpointed(module: nn.Module, x: Tensor, emb: Tensor, enabled: bool, *extra: Tensor | None) -> Tensor:
    """Run ``module(x, emb, *extra)``, recomputing its activations in the backward pass when ``enabled`` (saves
    memory). ``extra``: the context and its mask, for blocks that take them."""
    if enabled and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(module, x, emb, *extra, use_reentrant=False)
    return module(x, emb, *extra)
