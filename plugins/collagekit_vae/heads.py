"""Latent heads (registry kind ``head``): the Collage VAE's prior p(w | z) and posterior q(w | x, z).

Each head maps features on the range-cell grid to a diagonal Gaussian over the ``p`` latent channels of
every cell: (b f gh gw) -> mean, sd, each (b p gh gw). A recipe picks one per role by name
(``model.prior: {name: gaussian-residual, blocks: 2}``). Every head's output layer starts at zero, so
it starts as N(0, softplus(0)^2) everywhere: the prior and the posterior agree and the first KL is 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from collagekit.interfaces import LatentHead
from collagekit_vae.config import GaussianConvConfig, GaussianResidualConfig

SD_FLOOR = 1e-4  # keeps log(sd) finite in the KL when a head pushes its raw output far negative
SD_AT_ZERO = math.log(2.0) + SD_FLOOR  # the sd a zero raw output gives: softplus(0) + SD_FLOOR


def gaussian(stats: Tensor, dim: int = 1) -> tuple[Tensor, Tensor]:
    """Split (.. 2p ..) into mean and standard deviation (softplus keeps it positive and smooth)."""
    mean, raw = stats.chunk(2, dim=dim)
    return mean, F.softplus(raw) + SD_FLOOR


def zero_output(layer: nn.Conv2d) -> nn.Conv2d:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class GaussianConv(LatentHead):
    """conv k x k -> GELU -> conv 1 x 1: each cell's Gaussian reads its k x k neighbourhood (k = 1: the cell only)."""

    Config = GaussianConvConfig
    config: Any

    def bind(self, features: int, latent: int) -> None:
        k, hidden = self.config.kernel, self.config.hidden
        self.net = nn.Sequential(
            nn.Conv2d(features, hidden, k, padding=k // 2), nn.GELU(), zero_output(nn.Conv2d(hidden, 2 * latent, 1))
        )

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        return gaussian(self.net(features))


class ResidualBlock(nn.Module):
    """x + conv1x1(GELU(conv3x3(GELU(x)))), (b h gh gw) -> (b h gh gw); the last conv starts at zero."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.GELU(), nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(), zero_output(nn.Conv2d(hidden, hidden, 1))
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class GaussianResidual(LatentHead):
    """conv 3 x 3 stem -> ``blocks`` residual blocks -> GELU -> conv 1 x 1: a deeper head with a wider view.

    Each block widens the receptive field by one cell each way: a cell's Gaussian reads the cells up to
    ``1 + blocks`` away (the centre of a 7 x 7 grid reads all of it with two blocks), where the
    default :class:`GaussianConv` reads its 3 x 3 neighbourhood. The blocks start as the identity.
    """

    Config = GaussianResidualConfig
    config: Any

    def bind(self, features: int, latent: int) -> None:
        hidden = self.config.hidden
        self.stem = nn.Conv2d(features, hidden, 3, padding=1)
        self.blocks = nn.Sequential(*(ResidualBlock(hidden) for _ in range(self.config.blocks)))
        self.out = nn.Sequential(nn.GELU(), zero_output(nn.Conv2d(hidden, 2 * latent, 1)))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        return gaussian(self.out(self.blocks(self.stem(features))))
