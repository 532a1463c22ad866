"""A U-Net for any number of dimensions, built from :mod:`mmdiff.nn.blocks`.

``UNet(dims=1, in_channels=80, ...)`` is the audio network (mel bins as channels, time as the axis); video uses the
same blocks at three dimensions. Any input whose size is a multiple of the total downsampling factor works, so a
model trained on short clips generates longer ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .blocks import (
    Attention,
    CrossAttention,
    Downsample,
    ResBlock,
    SpatialAttention,
    TemporalAttention,
    Upsample,
    checkpointed,
    conv_block,
    group_norm,
    zero_init,
)
from .embeddings import ConditionEmbedding, GridPosition, TimestepEmbedding


def pooled_embedding(context_dim: int, emb_dim: int, norm: bool = False) -> nn.Module:
    """The layer that adds a caption's pooled embedding ``(B, context_dim)`` to the timestep embedding ``(B, emb_dim)``.

    ``norm=False``: one zero-initialised linear layer, so a fresh network ignores the text there. ``norm=True``:
    LayerNorm, then a linear layer with weights ``N(0, 1 / context_dim)``: its outputs start with about unit variance,
    like a class label's embedding (:class:`~mmdiff.nn.embeddings.ConditionEmbedding`), so that a word that changes
    only the clip's order (a direction) moves every residual block's scale and shift from the first step, as a label
    does, rather than after the layer has grown from zero (Imagen, Saharia et al. 2022, adds the pooled text to the
    timestep embedding the same way).
    """
    if not norm:
        return zero_init(nn.Linear(context_dim, emb_dim))
    layer = nn.Linear(context_dim, emb_dim)
    nn.init.normal_(layer.weight, std=context_dim**-0.5)
    nn.init.zeros_(layer.bias)
    return nn.Sequential(nn.LayerNorm(context_dim), layer)


@dataclass
class UNetPass:
    """One forward pass of a :class:`UNet` in progress, stage by stage (:meth:`UNet.begin`, :meth:`UNet.step`,
    :meth:`UNet.finish`), so that two networks can run side by side and exchange features between stages (the joint
    audio-video network, :class:`~mmdiff.nn.joint.JointUNet`). ``h`` is the current feature map."""

    h: Tensor
    emb: Tensor
    context: tuple[Tensor | None, Tensor | None]
    skips: list[Tensor] = field(default_factory=list)


class UNet(nn.Module):
    """``net(x_t (B, C, *S), t (B,), label=(B,), concat=(B, C_cat, *S), context=(B, L, D), context_mask=(B, L),
    pooled=(B, D)) -> (B, C_out, *S)``.

    Args:
        dims: 1, 2 or 3 spatial dims.
        in_channels: input channels.
        out_channels: output channels (default: ``in_channels``).
        channels: width of the first level; level ``i`` has ``channels * channel_mult[i]``.
        channel_mult: one entry per level; each level but the last halves the resolution.
        num_res_blocks: residual blocks per level.
        attention_levels: levels (0 = full resolution) that get self-attention after each residual block.
        heads: attention heads.
        num_classes: class-conditional when > 0 (label ``num_classes`` is the null label for guidance).
        dropout: dropout inside residual blocks.
        time_scale: multiplies the network time before the sinusoidal embedding.
        down_factor: per-axis downsampling factor between levels (e.g. ``(1, 2, 2)`` keeps video frames).
        gradient_checkpointing: recompute block activations in the backward pass (less memory, ~30% slower).
        factorized: video (``dims=3``, axes frames x height x width): (2+1)-D convolutions and, where attention is
            asked for, spatial attention within frames plus temporal attention across frames with relative positions
            (the temporal parts start at zero).
        concat_channels: extra input channels given as ``concat=(B, concat_channels, *S)`` (e.g. known frames and
            their mask), joined to ``x_t`` before the first convolution; zeros when not given.
        context_dim: width ``D`` of condition tokens ``context (B, L, D)`` (text); > 0 adds cross-attention
            (:class:`~mmdiff.nn.blocks.CrossAttention`) after each residual block of the ``cross_attention_levels``
            and in the middle, and adds ``pooled (B, D)`` (one vector per sample) to the timestep embedding. Both start
            at zero (the pooled path unless ``pooled_norm``), so the network is the unconditional one until it learns
            to listen.
        cross_attention_levels: levels with cross-attention (default: the ``attention_levels``).
        frame_norm: factorised video: GroupNorm over each frame (True, as an image network inflated to video) or over
            the whole clip (False: the frames share their statistics).
        clip_attention_levels: factorised video: levels (of the ``attention_levels``) whose self-attention runs over
            every position of the clip at once (frames x height x width, :class:`~mmdiff.nn.blocks.Attention`)
            instead of within each frame plus across frames at each pixel; the middle block follows the lowest
            level. Pixel-wise temporal attention sees an object only while it stays on that pixel; over the whole clip
            every position can attend to the same object wherever it has moved, which keeps its colour and form from
            frame to frame. Cheap at the lowest levels, where a clip has few positions.
        positions: add every position's index along each axis (:class:`~mmdiff.nn.embeddings.GridPosition`, zero at
            the start) to the features after the input convolution, so that the layers know where they are (a
            condition on motion, "moving left", is a pattern over frames and x); off by default (a net equivariant to
            shifts away from its edges).
        frame_embedding: factorised video: add an embedding of each frame's index (sinusoids through a zero-initialised
            layer, :class:`~mmdiff.nn.embeddings.GridPosition` over the frames) to the timestep-and-condition
            embedding, so every residual block scales and shifts each frame by its own ``(B, F, emb_dim)`` vector, a
            function of the frame and the condition together. "Moving left" moves the mean clip's mass from right to
            left over the frames: a product of the words and the frame index, which one scale and shift for the whole
            clip cannot make and per-frame ones make in one layer. Off by default.
        pooled_norm: how ``pooled`` joins the timestep embedding (see :func:`pooled_embedding`): False, one
            zero-initialised linear layer (the network starts as the unconditional one); True, a LayerNorm and a linear
            layer whose outputs start with unit variance, as a class label's embedding does, so that two captions
            differ in the embedding from the first step.
        norm_groups: at most this many GroupNorm groups in every norm of the network (32, as in
            LDM's U-Net; with fewer channels than that every channel is its own group, which normalises each
            channel's amplitude away: fewer groups keep it; see :func:`~mmdiff.nn.blocks.group_norm`).
    """

    def __init__(
        self,
        dims: int = 1,
        in_channels: int = 80,
        out_channels: int | None = None,
        channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 4),
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] = (2,),
        heads: int = 4,
        num_classes: int = 0,
        dropout: float = 0.0,
        time_scale: float = 1.0,
        down_factor: int | Sequence[int] = 2,
        gradient_checkpointing: bool = False,
        factorized: bool = False,
        concat_channels: int = 0,
        context_dim: int = 0,
        cross_attention_levels: Sequence[int] | None = None,
        frame_norm: bool = True,
        norm_groups: int = 32,
        clip_attention_levels: Sequence[int] = (),
        positions: bool = False,
        frame_embedding: bool = False,
        pooled_norm: bool = False,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.dims, self.gradient_checkpointing, self.concat_channels = dims, gradient_checkpointing, concat_channels
        self.context_dim = context_dim
        cross_levels = attention_levels if cross_attention_levels is None else cross_attention_levels
        for key, levels in (("attention_levels", attention_levels), ("cross_attention_levels", cross_levels)):
            missing = sorted(set(levels) - set(range(len(channel_mult))))
            if missing:  # a level the net does not have would otherwise get no attention, silently
                raise ValueError(
                    f"net.{key}={list(levels)}: level(s) {missing} do not exist; the net has levels "
                    f"0..{len(channel_mult) - 1} (one per net.channel_mult entry, {list(channel_mult)})"
                )
        clip_levels = set(clip_attention_levels)
        if clip_levels and not (factorized and dims == 3):
            raise ValueError(
                f"net.clip_attention_levels={sorted(clip_levels)}: only for factorised video nets (dims: 3, factorized: "
                "true); other nets already attend over all positions"
            )
        if not clip_levels <= set(attention_levels):
            raise ValueError(
                f"net.clip_attention_levels={sorted(clip_levels)}: expected levels among the attention_levels "
                f"{list(attention_levels)}"
            )
        lowest = len(channel_mult) - 1  # the middle block's level
        per_frame = factorized and frame_norm  # where norms work frame by frame

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(
                dims, cin, cout, emb_dim, dropout, factorized=factorized, frame_norm=frame_norm, norm_groups=norm_groups
            )

        def attention(width: int, level: int | None = None) -> list[nn.Module]:
            over_clip = (lowest if level is None else level) in clip_levels
            blocks = (
                [SpatialAttention(width, heads, norm_groups), TemporalAttention(width, heads, norm_groups=norm_groups)]
                if factorized and not over_clip
                else [Attention(width, heads, norm_groups)]  # all positions: (B, C, F*H*W) tokens for a clip
            )
            if level is not None and level not in attention_levels:
                blocks = []
            if context_dim and (level is None or level in cross_levels):
                blocks.append(CrossAttention(width, context_dim, heads, per_frame=per_frame, norm_groups=norm_groups))
            return blocks

        factor = tuple(down_factor) if isinstance(down_factor, Sequence) else (down_factor,) * dims
        if frame_embedding and not (factorized and dims == 3 and factor[0] == 1):
            raise ValueError(
                "net.frame_embedding=true: only for factorised video nets that keep their frames at every level "
                f"(dims: 3, factorized: true, down_factor [1, ., .]); got dims={dims}, factorized={factorized}, "
                f"down_factor={list(factor)}"
            )
        self.multiple = tuple(f ** (len(channel_mult) - 1) for f in factor)  # input sizes must be multiples of this
        emb_dim = 4 * channels
        self.time = TimestepEmbedding(emb_dim, scale=time_scale)
        self.cond = ConditionEmbedding(num_classes, emb_dim)
        self.pooled = pooled_embedding(context_dim, emb_dim, pooled_norm) if context_dim else None
        self.inp = conv_block(dims, in_channels + concat_channels, channels, 3, factorized)
        self.position = GridPosition(channels, dims) if positions else None
        self.frame_embedding = GridPosition(emb_dim, 1) if frame_embedding else None

        widths = [channels * m for m in channel_mult]
        self.widths = widths
        # Per stage (each entry of down, then mid, then each entry of up): (kind, level of its output). A stage that
        # ends at a level's resolution after residual blocks is "down", "mid" or "up"; a resampling one is
        # "downsample" / "upsample" (JointUNet couples two networks after the former only).
        self.stage_levels: list[tuple[str, int]] = []
        self.down = nn.ModuleList()
        skips, ch = [channels], channels
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                blocks = [res(ch, width), *attention(width, level)]
                self.down.append(nn.ModuleList(blocks))
                self.stage_levels.append(("down", level))
                ch = width
                skips.append(ch)
            if level < len(widths) - 1:
                self.down.append(nn.ModuleList([Downsample(dims, ch, factor)]))
                self.stage_levels.append(("downsample", level + 1))
                skips.append(ch)
        self.mid = nn.ModuleList([res(ch, ch), *attention(ch), res(ch, ch)])
        self.stage_levels.append(("mid", len(widths) - 1))
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for i in range(num_res_blocks + 1):
                blocks = [res(ch + skips.pop(), width), *attention(width, level)]
                ch = width
                if level > 0 and i == num_res_blocks:
                    blocks.append(Upsample(dims, ch, factor, factorized))
                self.up.append(nn.ModuleList(blocks))
                self.stage_levels.append(
                    ("upsample", level - 1) if level > 0 and i == num_res_blocks else ("up", level)
                )
        self.out = nn.Sequential(
            group_norm(ch, norm_groups, per_frame=per_frame),
            nn.SiLU(),
            zero_init(conv_block(dims, ch, out_channels, 3, factorized)),
        )

    def _run(self, blocks: nn.ModuleList, h: Tensor, emb: Tensor, context: tuple[Tensor | None, ...]) -> Tensor:
        for block in blocks:
            extra = context if getattr(block, "takes_context", False) else ()
            h = checkpointed(block, h, emb, self.gradient_checkpointing and self.training, *extra)
        return h

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        label: Tensor | None = None,
        concat: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
    ) -> Tensor:
        run = self.begin(x, t, label, concat, context, context_mask, pooled)
        for stage in range(len(self.stage_levels)):
            self.step(run, stage)
        return self.finish(run)

    def begin(
        self,
        x: Tensor,
        t: Tensor,
        label: Tensor | None = None,
        concat: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
    ) -> UNetPass:
        """Check the inputs, embed time and conditions and run the input convolution: a pass ready for stage 0."""
        if self.concat_channels:  # no concat given = all zeros (for known frames: none known)
            if concat is None:
                concat = x.new_zeros(x.shape[0], self.concat_channels, *x.shape[2:])
            if concat.shape[1] != self.concat_channels:
                raise ValueError(f"UNet: concat must have {self.concat_channels} channels, got {tuple(concat.shape)}")
            x = torch.cat([x, concat.to(x.dtype)], dim=1)
        sizes = x.shape[2:]
        if any(s % m for s, m in zip(sizes, self.multiple)):
            raise ValueError(f"UNet: input size {tuple(sizes)} must be a multiple of {self.multiple} on each axis")
        emb = self.time(t.to(x.device)) + self.cond(label, x.shape[0], x.device)  # (B, emb_dim)
        if context is not None and not self.context_dim:
            raise ValueError("UNet: got a context (text) but has no cross-attention; set net.context_dim")
        if context is not None and context.shape[-1] != self.context_dim:
            raise ValueError(f"UNet: context must be (B, L, {self.context_dim}), got {tuple(context.shape)}")
        if pooled is not None and self.pooled is not None:
            emb = emb + self.pooled(pooled.to(emb.dtype))
        if self.frame_embedding is not None:  # one embedding per frame: (B, emb_dim) -> (B, F, emb_dim)
            emb = emb[:, None] + self.frame_embedding((x.shape[2],)).T.to(emb.dtype)[None]
        h = self.inp(x)  # (B, C, *S); video: S = (F, H, W)
        if self.position is not None:
            h = h + self.position(tuple(h.shape[2:])).to(h.dtype)[None]  # (1, C, *S)
        return UNetPass(h, emb, (context, context_mask), [h])

    def step(self, run: UNetPass, stage: int) -> None:
        """Run stage ``stage`` (an index into :attr:`stage_levels`) of ``run``: a down entry (its output kept for the
        skip connection), the middle, or an up entry (joined with its skip)."""
        if stage < len(self.down):
            run.h = self._run(self.down[stage], run.h, run.emb, run.context)
            run.skips.append(run.h)
        elif stage == len(self.down):
            run.h = self._run(self.mid, run.h, run.emb, run.context)
        else:
            blocks = self.up[stage - len(self.down) - 1]
            run.h = self._run(blocks, torch.cat([run.h, run.skips.pop()], dim=1), run.emb, run.context)

    def finish(self, run: UNetPass) -> Tensor:
        """The output layer after the last stage."""
        return self.out(run.h)
