"""The network with its conditioner's encoder in front, so a jointly trained encoder trains, averages and saves as
part of the network.

A conditioner whose conditions need a learned encoding (text: token ids -> token embeddings) gives one through
``encoder(out_dim)``; :class:`ConditionedNetwork` then takes the conditioner's raw conditions (``text_ids``,
``text_mask``), encodes them and calls the network with what it understands (``context``, ``context_mask``,
``pooled``). The trainer, EMA, checkpoints, exact resume, several processes and ``torch.compile`` see one module, and
the conditions stay small integer tensors that guidance and dropout handle like class labels.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class ConditionedNetwork(nn.Module):
    """``forward(x, t, text_ids=(B, L), text_mask=(B, L), **rest) = net(x, t, **encoder(text_ids, text_mask), **rest)``.

    State dict keys are ``net.*`` and ``encoder.*``. Calls without text (an unconditional pass) go straight to the
    network.
    """

    def __init__(self, net: nn.Module, encoder: nn.Module):
        super().__init__()
        self.net, self.encoder = net, encoder

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        ids, mask = cond.pop("text_ids", None), cond.pop("text_mask", None)
        if ids is not None:
            if mask is None:
                mask = ids != 0
            cond.update(self.encoder(ids, mask))
        return self.net(x, t, **cond)


def with_encoder(net: nn.Module, conditioner: Any) -> nn.Module:
    """``net`` with the conditioner's encoder in front when the conditioner has one (text), else ``net`` itself."""
    make = getattr(conditioner, "encoder", None)
    if make is None:
        return net
    width = getattr(net, "context_dim", 0)
    if not width:
        raise ValueError(
            f"conditioner {type(conditioner).__name__} gives text tokens, but the network ({type(net).__name__}) has "
            "no cross-attention: set net.context_dim (e.g. 256)"
        )
    return ConditionedNetwork(net, make(width))
