"""A residual MLP denoiser for points, conditioned on time and class."""

from __future__ import annotations

from torch import Tensor, nn

from ...nn import ConditionEmbedding, TimestepEmbedding


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.film = nn.Linear(width, 2 * width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.film(emb).chunk(2, dim=1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class PointsMLP(nn.Module):
    """``net(x_t (B, dim), t (B,), label=(B,)) -> prediction (B, dim)``: FiLM-conditioned residual MLP blocks."""

    def __init__(self, dim: int = 2, width: int = 128, depth: int = 3, num_classes: int = 0, time_scale: float = 1.0):
        super().__init__()
        self.time = TimestepEmbedding(width, scale=time_scale)
        self.cond = ConditionEmbedding(num_classes, width)
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(_Block(width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        emb = self.time(t) + self.cond(label, x.shape[0], x.device)  # (B, width)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
