"""The conditioner protocol and the two steps every conditioner shares: training dropout and request checking."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from ..core import drop_conditions


@runtime_checkable
class Conditioner(Protocol):
    """What the trainer and generation need to condition a network.

    * ``request_keys``: the keyword arguments a user may give at generation (``label``, later ``prompt`` ...);
    * ``__call__(batch)``: a collated training batch (already on the device) -> condition tensors ``{name: (B, ...)}``;
    * ``null()``: the null condition per key, for classifier-free guidance (a per-sample value or a batch);
    * ``dropout``: the share of training samples whose conditions are replaced by the null condition;
    * ``request(n, device, **request)``: user requests -> condition tensors for ``n`` samples;
    * ``describe(cond)``: one short caption per sample (``"organ"``), for previews and file listings.

    Optional: ``request_null(n, device, **request)`` gives the guidance's unconditional branch for a request (text:
    the negative prompt), and ``encoder(out_dim)`` a module that encodes the conditions inside the network (text: a
    transformer trained with it; see :mod:`mmdiff.conditioners.network`).
    """

    request_keys: tuple[str, ...]
    dropout: float

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Tensor]: ...

    def null(self) -> dict[str, Any]: ...

    def request(self, n: int, device: Any = "cpu", **request: Any) -> dict[str, Tensor]: ...

    def describe(self, cond: Mapping[str, Tensor]) -> list[str]: ...


def training_conditions(conditioner: Conditioner, batch: Mapping[str, Any], generator: Any = None) -> dict[str, Tensor]:
    """The conditions of a training batch with classifier-free-guidance dropout applied (per-sample generators keep it
    batch-invariant, so a resumed or multi-process run drops the same samples)."""
    cond = conditioner(batch)
    null = conditioner.null()
    if not cond or not null or conditioner.dropout == 0:
        return cond
    return drop_conditions(cond, null, conditioner.dropout, generator)


def guidance_null(conditioner: Conditioner, n: int, device: Any, request: Mapping[str, Any]) -> dict[str, Any]:
    """The null conditions classifier-free guidance contrasts a request with: the conditioner's ``request_null``
    when it has one (a negative prompt), else its plain ``null()``."""
    custom = getattr(conditioner, "request_null", None)
    return custom(n, device, **request) if custom is not None else conditioner.null()


def check_request(conditioner: Conditioner, request: Mapping[str, Any]) -> None:
    """Raise a one-line error for request keys the conditioner does not take."""
    unknown = sorted(set(request) - set(conditioner.request_keys))
    if unknown:
        takes = ", ".join(conditioner.request_keys) or "no conditions (it is unconditional)"
        raise ValueError(f"unknown condition(s) {unknown}; this model takes: {takes}")
