"""One model definition: what a network's input and output mean, written once for training and for sampling.

A :class:`DiffusionModel` pairs a schedule (how noise levels map to the network's input scale and time input) with a
parameterisation (what the network predicts). The objective reads it to build training targets and the samplers read
it (through :meth:`DiffusionModel.denoiser`) to turn predictions back into ``x0``, so the two can never disagree. This
is the role of k-diffusion's ``Denoiser.loss``/``forward`` pair and of EDM's preconditioner (Karras et al. 2022,
section 5): one object owns the scaling ``x -> alpha * x``, the time ``t = net_time(sigma)`` and the prediction type.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._tensor import append_dims
from .parameterization import check_parameterization, prediction_from, x0_from_prediction
from .schedules import Schedule


class DiffusionModel:
    """A schedule and a parameterisation: everything that gives a network's numbers their meaning.

    Args:
        schedule: the noise schedule the network is trained under (``input_scale``, ``net_time``, the sigma range).
        parameterization: what the network predicts: ``epsilon``, ``x0``, ``v`` or ``flow``.
    """

    def __init__(self, schedule: Schedule, parameterization: str = "v"):
        self.schedule = schedule
        self.parameterization = check_parameterization(parameterization)

    def __repr__(self) -> str:
        return f"DiffusionModel({self.schedule!r}, parameterization={self.parameterization!r})"

    def scales(self, sigma: Tensor, ndim: int) -> tuple[Tensor, Tensor]:
        """``(alpha, s = alpha * sigma)`` for VE noise levels ``sigma (B,)``, shaped ``(B, 1, ..., 1)`` for ``ndim``."""
        sigma = sigma.float()
        alpha = self.schedule.input_scale(sigma).float()
        return append_dims(alpha, ndim), append_dims(alpha * sigma, ndim)

    def predict(self, net: Any, x: Tensor, sigma: Tensor, **cond: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Run ``net`` on the VE-frame input ``x = x0 + sigma * noise``.

        Returns ``(prediction, x_t, alpha, s)``: the network's float32 output, the input it saw
        ``x_t = alpha * x = alpha * x0 + s * noise`` (cast to the network's dtype), and the scales.
        """
        sigma = sigma.to(device=x.device, dtype=torch.float32)  # (B,)
        alpha, s = self.scales(sigma, x.ndim)
        x_t = x.float() * alpha  # (B, ...)
        dtype = _parameter_dtype(net)
        net_in = x_t.to(dtype) if dtype is not None and dtype.is_floating_point else x_t
        pred = net(net_in, self.schedule.net_time(sigma).to(x.device), **cond).float()
        return pred, x_t, alpha, s

    def target(self, x0: Tensor, noise: Tensor, alpha: Tensor, s: Tensor) -> Tensor:
        """The training target of the parameterisation for clean data ``x0`` and its noise."""
        return prediction_from(self.parameterization, x0, noise, alpha, s)

    def denoise(self, net: Any, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        """``x0_hat`` (float32) for the VE-frame input ``x`` at noise levels ``sigma (B,)``."""
        pred, x_t, alpha, s = self.predict(net, x, sigma, **cond)
        return x0_from_prediction(self.parameterization, pred, x_t, alpha, s)

    def denoiser(self, net: Any) -> NetworkDenoiser:
        """``net`` wrapped as the core's denoiser contract ``denoiser(x, sigma, **cond) -> x0_hat``."""
        return NetworkDenoiser(net, self)


class NetworkDenoiser(nn.Module):
    """A network trained under ``model`` as the denoiser contract ``denoiser(x, sigma, **cond) -> x0_hat``.

    ``x`` is in the VE frame (``x0 + sigma * noise``), ``sigma`` is ``(B,)``; the result is ``x0_hat`` in float32,
    whatever dtype the network runs in (it gets ``alpha * x`` cast to its parameters' dtype).
    """

    def __init__(self, net: Any, model: DiffusionModel):
        super().__init__()
        self.net, self.model = net, model

    def forward(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        return self.model.denoise(self.net, x, sigma, **cond)


def _parameter_dtype(net: Any) -> torch.dtype | None:
    param = next(iter(net.parameters()), None) if isinstance(net, nn.Module) else None
    return param.dtype if param is not None else None
