"""Image components: 2D tiling and the dihedral auxiliary cells."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from collagekit.errors import CollagekitError
from collagekit.grid import GridPartitioner
from collagekit.interfaces import AuxiliaryDomain
from collagekit_image.config import DihedralConfig, TilesConfig


class ImageTiles(GridPartitioner):
    """Square (or h x w) range tiles over an image of any size, padded at the right and bottom borders."""

    ndim: ClassVar[int] = 2

    Config = TilesConfig


def dihedral_transforms(x: Tensor) -> list[Tensor]:
    """The 7 non-identity elements of the dihedral group D4 acting on the last two (square) axes."""
    flipped = x.flip(-1)
    return [
        torch.rot90(x, 1, dims=(-2, -1)),
        torch.rot90(x, 2, dims=(-2, -1)),
        torch.rot90(x, 3, dims=(-2, -1)),
        flipped,
        torch.rot90(flipped, 1, dims=(-2, -1)),
        torch.rot90(flipped, 2, dims=(-2, -1)),
        torch.rot90(flipped, 3, dims=(-2, -1)),
    ]


class Dihedral(AuxiliaryDomain):
    """Rotations and flips of every pooled domain: 7 extra cells per domain (the identity is the domain).

    They are permutations of the domain's pixels, hence non-expansive, and count towards the
    Lipschitz bound as signal-dependent sources.
    """

    Config = DihedralConfig

    signal_dependent: ClassVar[bool] = True

    def bind(self, range_size: tuple[int, ...]) -> None:
        if len(range_size) != 2 or range_size[0] != range_size[1]:
            raise CollagekitError(f"dihedral cells need square 2D range cells, got range size {range_size}")

    def count(self, num_domains: int) -> int:
        return 7 * num_domains

    def forward(self, pooled: Tensor, scale: int = 1) -> Tensor:
        """(b c n h w) -> (b c (7 n) h w), transform-major."""
        return torch.cat(dihedral_transforms(pooled), dim=2)

    def variants(self, size: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """The 7 transforms as permutations of a cell's pixels (applied to a grid of pixel indices)."""
        index = torch.arange(size[0] * size[1]).reshape(size)
        return torch.stack(dihedral_transforms(index)).reshape(7, -1), torch.ones(7)
