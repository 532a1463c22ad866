"""The training loss of :class:`mmdiff.nn.Autoencoder`: a per-sample reconstruction loss the Trainer uses as its
objective (``objective(model, x0, generator=gens, **cond) -> (B,)``), as a diffusion loss would be.

Terms (each a per-sample mean, weighted and summed; the weights are the constructor's arguments):

- ``l1``: mean absolute error of the reconstruction;
- ``kl``: KL divergence of the diagonal Gaussian posterior to ``N(0, I)`` (Kingma & Welling 2014), summed over the
  sample's latent elements and divided by the number of its input elements, so ``kl_weight`` means the same whatever
  the compression; LDM (Rombach et al. 2022) uses a weight of about ``1e-6`` so that the latent stays informative
  and only its scale is kept in check;
- ``spectral`` (audio log-mels ``x = (log mel - center) / log_scale``): multi-resolution terms on mel magnitudes
  ``M = exp(x * log_scale)``, as in the multi-resolution STFT loss of Yamamoto et al. 2020 (Parallel WaveGAN) but on
  mels: at each factor ``s`` of ``spectral_scales`` both magnitudes are average-pooled by ``s`` over time and mel bins,
  then spectral convergence ``||M - M^||_F / ||M||_F`` plus the L1 distance of log magnitudes, averaged over scales
  (the center only scales ``M`` by a constant, which neither term sees). Pooling the magnitudes (not the logs) makes
  the coarse scales judge the energy envelope, which L1 on logs alone under-weights at loud bins;
- ``gradient``: L1 between the finite differences of the reconstruction and of the input along every axis after the
  channels (edges; motion between frames for video), averaged over those axes;
- ``adversarial`` (when ``adversarial_weight > 0`` and the network has a discriminator): hinge losses (Lim & Ye 2017,
  as in LDM and VQGAN): the generator's ``-mean D(recon)`` times ``adversarial_weight`` plus the discriminator's
  ``mean relu(1 - D(x)) + mean relu(1 + D(recon))`` (weight 1). :meth:`mmdiff.nn.Autoencoder.forward` detaches the
  right parts so the first reaches only the autoencoder and the second only the discriminator. The term is on from
  the first step (the Trainer does not pass the step number; warm-starting from a run trained without it is the way
  to start it late). LDM's adaptive weight (a ratio of gradient norms at the last layer) is not used: it needs a
  second backward pass per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.noise import Generators
from ..nn.autoencoder import kl_to_standard_normal

#: log-magnitudes are clamped to this before ``exp`` so a wild reconstruction cannot overflow float32
_MAX_LOG_MAGNITUDE = 30.0


def _per_sample_mean(x: Tensor) -> Tensor:
    """``(B, ...)`` -> ``(B,)`` mean over everything but the batch."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def _unwrap(net: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / accelerate wrappers (``.module``), or ``net`` itself."""
    while hasattr(net, "module") and isinstance(net.module, nn.Module):
        net = net.module
    return net


def spectral_terms(recon: Tensor, x0: Tensor, log_scale: float, scales: Sequence[int]) -> Tensor:
    """Multi-resolution spectral convergence + log-magnitude L1 of normalised log-mels ``(B, mels, T)``, per sample
    ``(B,)`` (see the module docstring). A scale larger than an axis pools that axis whole."""
    if x0.ndim != 3:
        raise ValueError(f"spectral loss: needs log-mels (B, mels, frames), got shape {tuple(x0.shape)}")
    log_ref = (x0.float() * log_scale).clamp(max=_MAX_LOG_MAGNITUDE)[:, None]  # (B, 1, mels, T)
    log_out = (recon.float() * log_scale).clamp(max=_MAX_LOG_MAGNITUDE)[:, None]
    ref, out = log_ref.exp(), log_out.exp()
    total = torch.zeros(x0.shape[0], device=x0.device)
    for s in scales:
        kernel = (min(int(s), x0.shape[1]), min(int(s), x0.shape[2]))
        if kernel == (1, 1):
            m, m_hat, log_m, log_m_hat = ref, out, log_ref, log_out
        else:
            m, m_hat = F.avg_pool2d(ref, kernel), F.avg_pool2d(out, kernel)
            log_m, log_m_hat = m.log(), m_hat.log()
        convergence = torch.linalg.vector_norm((m - m_hat).flatten(1), dim=1) / torch.linalg.vector_norm(
            m.flatten(1), dim=1
        ).clamp_min(1e-12)
        total = total + convergence + _per_sample_mean((log_m - log_m_hat).abs())
    return total / len(scales)


def gradient_l1(recon: Tensor, x0: Tensor) -> Tensor:
    """L1 between finite differences of ``recon`` and ``x0 (B, C, *S)`` along each axis of ``S`` of size > 1,
    averaged over those axes: ``(B,)``."""
    axes = [d for d in range(2, x0.ndim) if x0.shape[d] > 1]
    if not axes:
        return torch.zeros(x0.shape[0], device=x0.device)
    return sum(_per_sample_mean((recon.diff(dim=d) - x0.diff(dim=d)).abs()) for d in axes) / len(axes)


class AutoencoderLoss:
    """``loss(net, x0 (B, C, *S), generator=None) -> (B,)``: the weighted terms of the module docstring.

    Conditions the Trainer passes (``label``, video's ``concat``, ...) are ignored: an autoencoder reconstructs its
    input. ``net`` is called once (``net(x0, generator=generator)``), so a DistributedDataParallel wrapper sees one
    forward. ``last_terms`` holds the last call's batch-mean terms as detached tensors (read them only when logging:
    reading a float every step would wait for the device).

    Args:
        l1_weight: weight of the L1 reconstruction term.
        kl_weight: weight of the KL term (normalised per input element, see the module docstring).
        spectral_weight: weight of the multi-resolution mel terms (audio only; 0 for video).
        spectral_scales: pooling factors of the spectral terms.
        log_scale: the audio adapter's ``log_scale`` (``x = (log mel - center) / log_scale``).
        gradient_weight: weight of the finite-difference L1 term (edges and motion for video).
        adversarial_weight: weight of the generator's hinge loss; > 0 also trains the discriminator (the network
            must have one: ``discriminator_channels > 0``).
    """

    def __init__(
        self,
        l1_weight: float = 1.0,
        kl_weight: float = 1e-6,
        spectral_weight: float = 0.0,
        spectral_scales: Sequence[int] = (1, 2, 4, 8),
        log_scale: float = 4.5,
        gradient_weight: float = 0.0,
        adversarial_weight: float = 0.0,
    ):
        if not spectral_scales or any(int(s) < 1 for s in spectral_scales):
            raise ValueError(f"spectral_scales must be positive integers, got {list(spectral_scales)}")
        self.l1_weight, self.kl_weight = float(l1_weight), float(kl_weight)
        self.spectral_weight, self.spectral_scales = float(spectral_weight), tuple(int(s) for s in spectral_scales)
        self.log_scale, self.gradient_weight = float(log_scale), float(gradient_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.last_terms: dict[str, Tensor] = {}

    def __call__(self, net: nn.Module, x0: Tensor, generator: Generators = None, **ignored: Any) -> Tensor:
        out = net(x0, generator=generator)
        recon, mean, logvar = out["recon"].float(), out["mean"].float(), out["logvar"].float()
        x0 = x0.float()
        terms: dict[str, Tensor] = {"l1": _per_sample_mean((recon - x0).abs())}
        # KL summed over the latent elements, divided by the input elements of the sample
        kl = kl_to_standard_normal(mean, logvar).flatten(1).sum(dim=1) / x0[0].numel()
        terms["kl"] = kl
        loss = self.l1_weight * terms["l1"] + self.kl_weight * kl
        if self.spectral_weight:
            terms["spectral"] = spectral_terms(recon, x0, self.log_scale, self.spectral_scales)
            loss = loss + self.spectral_weight * terms["spectral"]
        if self.gradient_weight:
            terms["gradient"] = gradient_l1(recon, x0)
            loss = loss + self.gradient_weight * terms["gradient"]
        if self.adversarial_weight:
            if "logits_fake" not in out:
                raise ValueError(
                    "adversarial_weight > 0 needs a discriminator: set the autoencoder's discriminator_channels > 0"
                )
            terms["generator"] = -_per_sample_mean(out["logits_fake"].float())
            terms["discriminator"] = _per_sample_mean(F.relu(1.0 - out["logits_real"].float())) + _per_sample_mean(
                F.relu(1.0 + out["logits_fake_d"].float())
            )
            loss = loss + self.adversarial_weight * terms["generator"] + terms["discriminator"]
        terms["total"] = loss
        self.last_terms = {name: value.detach().mean() for name, value in terms.items()}
        return loss

    def reconstruct(self, net: nn.Module, x0: Tensor) -> Tensor:
        """``decode(encode(x0))`` through the posterior mode, without gradients, on the unwrapped module (for demos
        and evaluation)."""
        module = _unwrap(net)
        with torch.no_grad():
            return module.decode(module.encode(x0))
