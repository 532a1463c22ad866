"""A KL-regularised autoencoder for 1, 2 or 3 dims, built from :mod:`mmdiff.nn.blocks`: the latent space of latent
diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models"; the KL term of the
variational autoencoder, Kingma & Welling 2014).

``Autoencoder(dims=1, in_channels=128)`` compresses normalised log-mels ``(B, 128, T)`` to ``(B, 8, T/4)``;
``Autoencoder(dims=3, in_channels=3, down_factor=(1, 2, 2), factorized=True, causal=True)`` compresses video
``(B, 3, F, H, W)`` in space only, frame by frame in time order, so that one image is a one-frame clip. An optional
patch discriminator (PatchGAN, Isola et al. 2017) lives in the same module so that one forward pass and one optimizer
train both (see :meth:`Autoencoder.forward` and :class:`mmdiff.latent.objective.AutoencoderLoss`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..core.noise import Generators, draw
from .blocks import (
    Attention,
    Downsample,
    ResBlock,
    SpatialAttention,
    TemporalAttention,
    Upsample,
    conv_block,
    conv_nd,
    group_norm,
)


class PatchDiscriminator(nn.Module):
    """A patch discriminator for ``x (B, C, *S)`` of 1, 2 or 3 dims (PatchGAN, Isola et al. 2017): a strided
    convolution and LeakyReLU, ``layers - 1`` more strided convolutions with GroupNorm and LeakyReLU (width doubling,
    at most ``8 * channels``), one stride-1 convolution with GroupNorm and LeakyReLU, and a convolution to one logit
    per patch ``(B, 1, *S')``. Kernels of 3 with padding 1 (stride 2 halves every axis, rounding up), so any size,
    even one frame, works. GroupNorm instead of BatchNorm keeps each sample's logits independent of the batch."""

    def __init__(self, dims: int, in_channels: int, channels: int = 64, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = [conv_nd(dims, in_channels, channels, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            norm = group_norm(out, groups=8)  # >= 2 values per group even on a 1-position map
            blocks += [conv_nd(dims, width, out, 3, stride=stride, padding=1), norm, nn.LeakyReLU(0.2)]
            width = out
        blocks.append(conv_nd(dims, width, 1, 3, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Autoencoder(nn.Module):
    """``encode(x (B, C, *S)) -> mean (B, latent_channels, *S / factors)``; ``decode(z) -> (B, C, *S)``;
    ``forward(x) -> {"recon", "mean", "logvar"[, discriminator logits]}`` for training.

    Encoder: ``conv_in`` -> per level ``num_res_blocks`` residual blocks (no time embedding) -> a strided
    downsampling by ``down_factor`` between levels -> middle (residual block, [self-attention], residual block) ->
    norm, SiLU, convolution to ``2 * latent_channels`` (the posterior's mean and log-variance). The decoder mirrors it
    with ``num_res_blocks + 1`` blocks per level (as in LDM's decoder) and nearest-neighbour upsampling, and ends in a
    convolution to ``in_channels`` with no squashing (log-mels are not bounded).

    Args:
        dims: 1 (audio ``(B, mels, T)``), 2 (images) or 3 (video ``(B, 3, F, H, W)``).
        in_channels: input channels (mel bins for audio, 3 for video).
        latent_channels: channels of the latent.
        channels: width of the first level; level ``i`` has ``channels * channel_mult[i]``.
        channel_mult: one entry per level; there are ``len(channel_mult) - 1`` downsamplings.
        num_res_blocks: residual blocks per encoder level.
        down_factor: per-axis factor of each downsampling, an int or e.g. ``(1, 2, 2)`` to keep video frames.
        factorized: video (``dims=3``): (2+1)-D convolutions and per-frame norms, as in the video U-Net.
        causal: video (``dims=3``): convolutions pad the frame axis on the past side only, norms work per frame and
            temporal attention is masked, so latent frame ``f`` depends on frames ``<= f`` only and encoding a clip's
            first frame alone gives exactly its first latent frame (image-to-video works in latent space). Needs a
            frame factor of 1.
        attention: self-attention in the middle (spatial within frames + temporal across frames for factorised or
            causal video; over all positions otherwise).
        heads: attention heads.
        logvar_clamp: the posterior log-variance is clamped to this range (LDM's ``(-30, 20)``).
        discriminator_channels: > 0 builds ``self.discriminator`` (:class:`PatchDiscriminator`) of this width for an
            adversarial loss; its state-dict keys start with ``discriminator.``, so the autoencoder loads without it.
        discriminator_layers: strided layers of the discriminator.
        norm_groups: at most this many GroupNorm groups (32 keeps the behaviour of runs saved before the option).
            A narrow network gets one channel a group from 32, instance normalisation, which scales each channel's
            amplitude away on every frame: the video CPU preset (16 channels) then returned every object grey (PSNR
            18.5 dB); 4 groups keep the colours (28.2 dB with ``shortcuts``; docs/latent.md).
        shortcuts: DC-AE's residual autoencoding (Chen et al. 2024, "Deep Compression Autoencoder for Efficient
            High-Resolution Diffusion Models"): parameter-free paths that the learned layers add to, so that the
            coarse content reaches the latent and comes back from it from the first step: average pooling around
            each downsampling, nearest-neighbour upsampling around each upsampling, the last features averaged over
            channel groups into the latent's mean, and the latent repeated over channel groups into the decoder.
            No new parameters: the state dict is the same either way. The last level's width must be a multiple of
            ``latent_channels``.
        decoder_noise: in training (``forward``), also add Gaussian noise of this many times each sample's latent
            standard deviation before decoding. With the LDM KL weight the posterior's own noise is about 1e-4 of
            the latent's spread, so the decoder never learns to tolerate the small per-frame errors a diffusion
            model leaves, and turns them into flicker; ``encode``/``decode`` are unchanged.
    """

    def __init__(
        self,
        dims: int,
        in_channels: int,
        latent_channels: int = 8,
        channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        down_factor: int | Sequence[int] = 2,
        factorized: bool = False,
        causal: bool = False,
        attention: bool = False,
        heads: int = 4,
        logvar_clamp: Sequence[float] = (-30.0, 20.0),
        discriminator_channels: int = 0,
        discriminator_layers: int = 3,
        norm_groups: int = 32,
        shortcuts: bool = False,
        decoder_noise: float = 0.0,
    ):
        super().__init__()
        factor = tuple(down_factor) if isinstance(down_factor, Sequence) else (down_factor,) * dims
        if len(factor) != dims:
            raise ValueError(f"down_factor {tuple(factor)} needs one entry per axis ({dims} axes)")
        if causal and (dims != 3 or factor[0] != 1):
            raise ValueError(f"causal needs video (dims=3) with a frame factor of 1, got dims={dims}, {factor}")
        self.dims, self.in_channels, self.latent_channels = dims, in_channels, latent_channels
        self.factors: tuple[int, ...] = tuple(f ** (len(channel_mult) - 1) for f in factor)
        self.logvar_clamp = (float(logvar_clamp[0]), float(logvar_clamp[1]))
        self.shortcuts, self.decoder_noise = shortcuts, float(decoder_noise)
        per_frame = factorized or causal

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(dims, cin, cout, 0, factorized=factorized, causal=causal, norm_groups=norm_groups)

        def norm(width: int) -> nn.GroupNorm:
            return group_norm(width, norm_groups, per_frame=per_frame)

        def conv(cin: int, cout: int) -> nn.Module:
            return conv_block(dims, cin, cout, 3, factorized, causal)

        def mid(width: int) -> nn.Sequential:
            blocks: list[nn.Module] = [res(width, width)]
            if attention and dims == 3 and per_frame:
                blocks += [
                    SpatialAttention(width, heads, norm_groups),
                    TemporalAttention(width, heads, causal=causal, norm_groups=norm_groups),
                ]
            elif attention:
                blocks.append(Attention(width, heads, norm_groups))
            return nn.Sequential(*blocks, res(width, width))

        widths = [channels * m for m in channel_mult]
        # encoder: (B, C, *S) -> (B, 2 * latent, *S / factors)
        enc: list[nn.Module] = [conv(in_channels, channels)]
        ch = channels
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                enc.append(res(ch, width))
                ch = width
            if level < len(widths) - 1:
                enc.append(Downsample(dims, ch, factor, shortcut=shortcuts))
        if shortcuts and ch % latent_channels:
            raise ValueError(f"shortcuts: the last level's width {ch} must be a multiple of latent_channels")
        # the last three modules map the features to the posterior (see posterior())
        enc += [mid(ch), norm(ch), nn.SiLU(), conv(ch, 2 * latent_channels)]
        self.encoder = nn.Sequential(*enc)
        # decoder: (B, latent, *S / factors) -> (B, C, *S); its first module maps the latent to features (decode())
        dec: list[nn.Module] = [conv(latent_channels, widths[-1]), mid(widths[-1])]
        ch = widths[-1]
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(num_res_blocks + 1):
                dec.append(res(ch, width))
                ch = width
            if level > 0:
                dec.append(Upsample(dims, ch, factor, factorized, causal, shortcut=shortcuts))
        dec += [norm(ch), nn.SiLU(), conv(ch, in_channels)]
        self.decoder = nn.Sequential(*dec)
        self.discriminator = (
            PatchDiscriminator(dims, in_channels, discriminator_channels, discriminator_layers)
            if discriminator_channels > 0
            else None
        )

    # ---- shapes ------------------------------------------------------------------------------------------------
    def latent_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Per-sample media shape ``(C, *S)`` -> latent shape ``(latent_channels, *S / factors)``, e.g.
        ``(128, 512) -> (8, 128)``; a size that is not a multiple of its axis' factor is a ValueError."""
        shape = tuple(int(s) for s in shape)
        if len(shape) != self.dims + 1:
            raise ValueError(f"autoencoder: shape {shape} needs (channels, {self.dims} sizes)")
        for axis, (size, f) in enumerate(zip(shape[1:], self.factors), start=1):
            if size % f:
                raise ValueError(f"autoencoder: size {size} of axis {axis} of shape {shape} is not a multiple of {f}")
        return (self.latent_channels, *(s // f for s, f in zip(shape[1:], self.factors)))

    def media_shape(self, latent_shape: Sequence[int]) -> tuple[int, ...]:
        """Per-sample latent shape ``(latent_channels, *S')`` -> media shape ``(in_channels, *S' * factors)``."""
        latent_shape = tuple(int(s) for s in latent_shape)
        if len(latent_shape) != self.dims + 1:
            raise ValueError(f"autoencoder: latent shape {latent_shape} needs (channels, {self.dims} sizes)")
        return (self.in_channels, *(s * f for s, f in zip(latent_shape[1:], self.factors)))

    # ---- encode / decode ---------------------------------------------------------------------------------------
    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, C, *S)`` -> the diagonal Gaussian posterior's ``mean, logvar``, each ``(B, latent, *S')``."""
        h = self.encoder[:-3](x)  # (B, width, *S')
        mean, logvar = self.encoder[-3:](h).chunk(2, dim=1)
        if self.shortcuts:  # DC-AE: the mean also gets the features averaged over groups of width / latent channels
            mean = mean + h.unflatten(1, (self.latent_channels, -1)).mean(dim=2)
        return mean, logvar.clamp(*self.logvar_clamp)

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mode (its mean): deterministic, the latent diffusion sees."""
        return self.posterior(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        """``z (B, latent, *S')`` -> ``(B, C, *S)``."""
        h = self.decoder[0](z)  # (B, width, *S')
        if self.shortcuts:  # DC-AE: each latent channel repeated over its group of the first width
            h = h + z.repeat_interleave(h.shape[1] // self.latent_channels, dim=1)
        return self.decoder[1:](h)

    def forward(self, x: Tensor, generator: Generators = None) -> dict[str, Tensor]:
        """One training pass: ``z = mean + exp(logvar / 2) * noise`` (the reparameterisation trick; noise from
        :func:`mmdiff.core.noise.draw`, so per-sample generators make each sample independent of its batch),
        ``recon = decode(z)``.

        With a discriminator, also its logits for the loss, all in this one call so that DistributedDataParallel sees
        one forward and one optimizer steps both networks:

        - ``logits_fake``: ``D(recon)`` through D's parameters *detached* (``torch.func.functional_call``), for the
          generator's loss: its gradient reaches the autoencoder only;
        - ``logits_fake_d``: ``D(recon.detach())`` and ``logits_real``: ``D(x)``, for the discriminator's loss: its
          gradient reaches D only.
        """
        mean, logvar = self.posterior(x)
        noise = draw("normal", mean.shape, generator, mean.device).to(mean.dtype)
        z = mean + torch.exp(0.5 * logvar) * noise
        if self.decoder_noise:  # noise in units of each sample's latent spread: a decoder robust to small errors
            spread = mean.detach().flatten(1).std(dim=1).reshape(-1, *[1] * (mean.ndim - 1))  # (B, 1, ...)
            z = z + self.decoder_noise * spread * draw("normal", mean.shape, generator, mean.device).to(mean.dtype)
        recon = self.decode(z)
        out = {"recon": recon, "mean": mean, "logvar": logvar}
        if self.discriminator is not None:
            frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
            frozen.update(dict(self.discriminator.named_buffers()))
            out["logits_fake"] = torch.func.functional_call(self.discriminator, frozen, (recon,))
            out["logits_fake_d"] = self.discriminator(recon.detach())
            out["logits_real"] = self.discriminator(x)
        return out


def kl_to_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` of a diagonal Gaussian, per element (summing gives the total)."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)


__all__ = ["Autoencoder", "PatchDiscriminator", "kl_to_standard_normal"]
