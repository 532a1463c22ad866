"""Latent diffusion: autoencoders (codecs) and the latent adapter that composes one with any media adapter.

- :class:`LatentAdapter` (:mod:`.adapter`): media adapter + codec, seen by the core as one adapter.
- :func:`load_codec` (:mod:`.codec`): an mmdiff autoencoder run or a local diffusers autoencoder folder by path.
- :class:`AutoencoderLoss` (:mod:`.objective`): the reconstruction + KL (+ spectral, gradient, adversarial) loss
  that ``mmdiff train recipe=audio_vae`` / ``video_vae`` trains :class:`mmdiff.nn.Autoencoder` with.

This layer sits above the checkpoints (it reads autoencoder runs) and below :mod:`mmdiff.components`.
"""

from .adapter import LatentAdapter
from .codec import Codec, load_codec, store_codec

__all__ = ["Codec", "LatentAdapter", "load_codec", "store_codec"]
