"""The 8 dihedral transforms of a square block, as used by the PIFS encoder and decoder.

Index 0 is the identity and 1..7 are :func:`collagekit_image.components.dihedral_transforms` in its
order: one definition of the group for the whole project. The decoder never rotates pixels: it
gathers through :func:`block_permutations`, which are those same transforms applied to a grid of
pixel indices, so encoder and decoder cannot disagree about what index ``t`` means.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from collagekit_image.components import dihedral_transforms

COUNT = 8


def all_transforms(x: Tensor) -> Tensor:
    """(... r r) -> (8 ... r r): the identity, then the 7 transforms of ``dihedral_transforms``."""
    return torch.stack([x, *dihedral_transforms(x)])


def apply(t: int, x: Tensor) -> Tensor:
    """Transform ``t`` of the block(s) ``x`` (... r r)."""
    return x if t == 0 else dihedral_transforms(x)[t - 1]


@lru_cache(maxsize=64)
def block_permutations(size: int) -> Tensor:
    """(8 size*size) int64: ``transformed.flatten()[p] = block.flatten()[perm[t, p]]``."""
    index = torch.arange(size * size).reshape(size, size)
    return all_transforms(index).reshape(COUNT, size * size)


@lru_cache(maxsize=1)
def tables() -> tuple[Tensor, Tensor]:
    """(compose (8 8), inverse (8,)), int64: ``apply(compose[a, b]) == apply(a) after apply(b)``.

    Worked out by acting on a 3x3 grid of distinct values (D4 acts faithfully on it)."""
    grid = torch.arange(9).reshape(3, 3)
    images = all_transforms(grid).reshape(COUNT, 9)
    lookup = {tuple(img.tolist()): i for i, img in enumerate(images)}
    compose = torch.empty(COUNT, COUNT, dtype=torch.long)
    for a in range(COUNT):
        for b in range(COUNT):
            compose[a, b] = lookup[tuple(apply(a, apply(b, grid)).reshape(9).tolist())]
    inverse = (compose == 0).long().argmax(1)
    return compose, inverse


def turn(blocks: Tensor, t: Tensor) -> Tensor:
    """(m r r) blocks, (m,) transform indices -> (m r r): block i turned by t[i] (one gather)."""
    m, r, _ = blocks.shape
    perms = block_permutations(r).to(blocks.device)[t]  # (m r*r)
    return blocks.reshape(m, r * r).gather(1, perms).reshape(m, r, r)
