"""A PIFS code is a sparse, adaptive collage of the core: decoding goes through the core operator.

The quadtree is the partition (``tiles2d`` with one level per range size, top cells of the top size);
every leaf names one source — domain ``d`` of its level's lattice turned by dihedral transform ``t``,
source id ``t * n + d`` in the core's order (the identity, then the ``dihedral`` cells transform-major)
— with contrast ``s`` as its weight and brightness ``o`` as its bias; a flat leaf (``s = 0``) names
source 0 with weight 0. The operator's contraction is ``s_max`` and a contrast ``s`` is stored as the
raw weight ``s / s_max`` (:func:`collagekit.sparse.raw_weights`), so the decoded map is the encoder's.
Every plane (Y, Cb, Cr or grey) has its own tree, as PIFS codes channels separately.
"""

from __future__ import annotations

import torch

from collagekit.grid import AveragePooler
from collagekit.operator import GridCollage
from collagekit.sparse import SparseParams, raw_weights
from collagekit_image.components import Dihedral, ImageTiles
from collagekit_pifs.encoder import ChannelCode, domain_positions
from collagekit_pifs.params import PifsParams


def as_collage(params: PifsParams, top: int, levels: int) -> GridCollage:
    """The core collage a PIFS code with this top range size and number of levels decodes through."""
    partitioner = ImageTiles(range_size=top, levels=levels, domain_size=2 * top, domain_stride=params.stride(top))
    return GridCollage(partitioner, AveragePooler(), [Dihedral()], contraction=params.s_max, mixing="sparse", sources=1)


def as_sparse(codes: list[ChannelCode], params: PifsParams, padded: tuple[int, int]) -> SparseParams:
    """Per-channel PIFS codes -> the core's sparse code (planes = channels, leaves level by level)."""
    levels = len(codes[0].levels)
    split = tuple(torch.cat([code.levels[level].split for code in codes]) for level in range(levels - 1))
    index, s, o = [], [], []
    for level in range(levels):
        for code in codes:
            leaf = code.levels[level]
            n = domain_positions(params, leaf.size, padded).shape[0]
            contrast = params.s_value(leaf.s)
            flat = leaf.s == params.s_zero
            index.append(torch.where(flat, 0, leaf.transform * n + leaf.domain))
            s.append(contrast)
            o.append(params.o_value(leaf.o, contrast))
    weight = torch.cat(s)[:, None]
    return SparseParams(
        split=split,
        index=torch.cat(index)[:, None],
        weight=raw_weights(weight, params.s_max),
        const_index=torch.zeros(weight.shape[0], 0, dtype=torch.long),
        aux=weight.new_zeros(weight.shape[0], 0),
        bias=torch.cat(o),
    )

