"""Decoding a PIFS code: the collage map as one gather, iterated to its fixed point by the core solver.

At scale ``S`` every block is ``S`` times larger: a range block of size ``r`` at (y, x) covers
``rS x rS`` pixels at (yS, xS), and its domain (2r at (dy, dx)) is the ``rS x rS`` block at
(dy S / 2, dx S / 2) of the 2x2-average-pooled iterate. The map is

    z'[p] = s[p] * pool(z)[src[p]] + o[p]        for every pixel p (all channels at once),

where ``src`` folds in the domain position and the block's dihedral transform
(:func:`transforms.block_permutations`). The maps are built once; each solver step is one pooling,
one gather and one multiply-add. Pooling and gathering are non-expansive and |s| <= s_max < 1, so the
map is a contraction in the sup norm.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from collagekit.solver import SolverStats, fixed_point
from collagekit_pifs import transforms
from collagekit_pifs.encoder import ChannelCode, children, domain_positions, top_positions
from collagekit_pifs.params import PifsParams


def leaf_positions(code: ChannelCode, padded: tuple[int, int], top: int) -> list[Tensor]:
    """Per level, (leaves 2) int64 top-left corners of the leaves, from the split flags alone."""
    positions = top_positions(padded, top)
    result = []
    for level in code.levels:
        if level.split.numel():
            result.append(positions[~level.split])
            positions = children(positions[level.split], level.size)
        else:
            result.append(positions)
            positions = positions[:0]
    return result


def collage_maps(
    codes: list[ChannelCode], params: PifsParams, padded: tuple[int, int], top: int, scale: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """-> (src, s, o), each (c H W) flattened, H W = padded * scale: the map's gather index into the
    flattened pooled iterate (c H/2 W/2), contrast and brightness per output pixel."""
    c = len(codes)
    big_h, big_w = padded[0] * scale, padded[1] * scale
    half_h, half_w = big_h // 2, big_w // 2
    total = c * big_h * big_w
    src = torch.zeros(total, dtype=torch.long)
    s_map = torch.zeros(total)
    o_map = torch.zeros(total)
    for ch, code in enumerate(codes):
        for level, pos in zip(code.levels, leaf_positions(code, padded, top)):
            if pos.shape[0] == 0:
                continue
            rs = level.size * scale
            local = torch.arange(rs)
            # Output pixels of every leaf: (k rs rs) flat indices.
            ys = (pos[:, 0] * scale)[:, None, None] + local[None, :, None]
            xs = (pos[:, 1] * scale)[:, None, None] + local[None, None, :]
            out = (ch * big_h + ys) * big_w + xs
            # Source pixels: the transform's permutation of the pooled domain block.
            perm = transforms.block_permutations(rs)[level.transform]  # (k rs*rs)
            d_pos = domain_positions(params, level.size, padded)
            if d_pos.shape[0]:
                corner = d_pos[level.domain] * scale // 2  # (k 2): even coordinates, exact
            else:
                corner = torch.zeros(pos.shape[0], 2, dtype=torch.long)
            sy = corner[:, 0:1] + perm // rs
            sx = corner[:, 1:2] + perm % rs
            source = (ch * half_h + sy) * half_w + sx
            s = params.s_value(level.s)
            o = params.o_value(level.o, s)
            flat = out.reshape(-1)
            src[flat] = source.reshape(-1)
            s_map[flat] = s[:, None].expand(-1, rs * rs).reshape(-1)
            o_map[flat] = o[:, None].expand(-1, rs * rs).reshape(-1)
    return src.to(device), s_map.to(device), o_map.to(device)


def make_step(src: Tensor, s_map: Tensor, o_map: Tensor, shape: tuple[int, int, int, int]):
    """The collage map on (1 c H W) iterates."""

    def step(z: Tensor) -> Tensor:
        pooled = F.avg_pool2d(z, 2).reshape(-1)
        return torch.addcmul(o_map, s_map, pooled[src]).reshape(shape)

    return step


def solve(
    codes: list[ChannelCode],
    params: PifsParams,
    padded: tuple[int, int],
    top: int,
    scale: int,
    device: torch.device,
    *,
    method: str = "anderson",
    tol: float = 1e-4,
    max_iter: int = 200,
) -> tuple[Tensor, SolverStats]:
    """The attractor (1 c H W) at ``scale`` (padded size; the caller crops), and the solver's stats."""
    src, s_map, o_map = collage_maps(codes, params, padded, top, scale, device)
    shape = (1, len(codes), padded[0] * scale, padded[1] * scale)
    # Start from o / (1 - s): the exact answer wherever a block's domain has the block's mean.
    z0 = (o_map / (1.0 - s_map)).clamp(0.0, 1.0).reshape(shape)
    return fixed_point(
        make_step(src, s_map, o_map, shape), z0, method=method, tol=tol, max_iter=max_iter, gradient="none"
    )
