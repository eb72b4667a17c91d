"""PIFS encoding of one image: quadtree partition, per-level batched search, quantised codes.

Shapes: ``h w`` the padded channel (multiples of the top range size), ``k`` blocks of a level,
``r`` their size. The quadtree is coded breadth first: level 0 holds the top blocks in row-major
order; each split block's 4 children (tl, tr, bl, br) follow in their parent's order at the next level.
A block becomes a leaf when its quantised code's RMS error is within ``tol`` (or it has the minimum
size). A block whose flat approximation (s = 0, o = its mean) already meets ``tol`` is stored flat:
no domain index and no transform, which is what makes smooth areas cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import Tensor
from torch.nn import functional as F

from collagekit.errors import CollagekitError
from collagekit_pifs import transforms
from collagekit_pifs.params import PifsParams
from collagekit_pifs.search import Search, search

@dataclass
class Level:
    """One quadtree level of one channel. Leaves are the level's blocks that are not split, in order."""

    size: int
    split: Tensor  # (nodes,) bool; empty at the minimum size, where nothing splits
    s: Tensor  # (leaves,) int64 contrast codes
    o: Tensor  # (leaves,) int64 brightness codes
    transform: Tensor  # (leaves,) int64 in [0, 8); meaningful where s != s_zero
    domain: Tensor  # (leaves,) int64 index into the level's domain lattice; likewise


@dataclass
class ChannelCode:
    levels: list[Level] = field(default_factory=list)


def top_size(params: PifsParams, spatial: tuple[int, int]) -> int:
    """The largest range size <= max_range for which the padded image holds at least one domain."""
    h, w = spatial
    r = params.max_range
    while r > params.min_range and min(-(-h // r) * r, -(-w // r) * r) < 2 * r:
        r //= 2
    if min(-(-h // r) * r, -(-w // r) * r) < 2 * r:
        raise CollagekitError(f"a {h}x{w} image is too small for PIFS with min_range {params.min_range} (needs {2 * r} pixels a side)")
    return r


def padded_size(spatial: tuple[int, int], top: int) -> tuple[int, int]:
    h, w = spatial
    return -(-h // top) * top, -(-w // top) * top


def top_positions(padded: tuple[int, int], top: int) -> Tensor:
    """(k 2) int64 (y, x) of the top blocks, row-major."""
    ys = torch.arange(0, padded[0], top)
    xs = torch.arange(0, padded[1], top)
    return torch.cartesian_prod(ys, xs)


def children(positions: Tensor, r: int) -> Tensor:
    """(k 2) parents of size r -> (4k 2) children of size r/2: per parent tl, tr, bl, br."""
    h = r // 2
    offsets = torch.tensor([[0, 0], [0, h], [h, 0], [h, h]])
    return (positions[:, None, :] + offsets[None]).reshape(-1, 2)


def domain_positions(params: PifsParams, r: int, padded: tuple[int, int]) -> Tensor:
    """(d 2) int64 (y, x) of the 2r x 2r domain blocks at this level, row-major (even coordinates)."""
    rows, cols = params.domain_grid(r, padded)
    st = params.stride(r)
    return torch.cartesian_prod(torch.arange(rows) * st, torch.arange(cols) * st).reshape(-1, 2)


def _blocks(image: Tensor, positions: Tensor, r: int) -> Tensor:
    """(h w), (k 2) -> (k r r): the r x r blocks at these top-left corners (one gather)."""
    offs = torch.arange(r)
    rows = (positions[:, 0:1] + offs)[:, :, None]
    cols = (positions[:, 1:2] + offs)[:, None, :]
    return image[rows, cols]


def fit_codes(
    ranges: Tensor, candidates: Tensor, params: PifsParams
) -> tuple[Tensor, Tensor, Tensor]:
    """(k n) ranges, (k n) their chosen transformed domains -> (s code, o code, squared error) (k,) each.

    Least-squares s clamped and quantised, then o from the quantised s, quantised; the error is that
    of the dequantised code, i.e. what the decoder's collage reproduces.
    """
    rm, dm = ranges.mean(1), candidates.mean(1)
    rc, dc = ranges - rm[:, None], candidates - dm[:, None]
    dn2 = (dc * dc).sum(1)
    s = torch.where(dn2 > 1e-12, (rc * dc).sum(1) / dn2.clamp_min(1e-12), torch.zeros_like(dn2))
    s_code = params.s_code(s)
    s_q = params.s_value(s_code)
    o_code = params.o_code(rm - s_q * dm, s_q)
    o_q = params.o_value(o_code, s_q)
    err = ((s_q[:, None] * candidates + o_q[:, None] - ranges) ** 2).sum(1)
    return s_code, o_code, err


def encode_channel(
    image: Tensor, params: PifsParams, top: int, tol: float, method: Search, size_exponent: float = 0.0
) -> ChannelCode:
    """(h w) padded channel in [0, 1] -> its quadtree PIFS code. ``tol``: RMS error target in [0, 1] units
    for the smallest blocks; a block of size r gets ``tol * (r / min_range) ** size_exponent``."""
    padded = (image.shape[0], image.shape[1])
    pooled = F.avg_pool2d(image[None, None], 2)[0, 0]  # every 2r domain pooled to r at once
    code = ChannelCode()
    positions = top_positions(padded, top)
    sizes = [r for r in params.sizes() if r <= top]
    flat_code = torch.tensor(params.s_zero)
    for level, r in enumerate(sizes):
        k, n = positions.shape[0], r * r
        last = level == len(sizes) - 1
        ranges = _blocks(image, positions, r).reshape(k, n)
        # Flat fit first: blocks it serves need no search at all.
        zeros = torch.zeros(k)
        s_code = flat_code.expand(k).clone()
        o_code = params.o_code(ranges.mean(1), zeros)
        # The flat fit's error with its *quantised* brightness: what the decoder will produce.
        flat_err = ((ranges - params.o_value(o_code, zeros)[:, None]) ** 2).sum(1)
        err = flat_err
        transform = torch.zeros(k, dtype=torch.long)
        domain = torch.zeros(k, dtype=torch.long)
        limit = (tol * (r / params.min_range) ** size_exponent) ** 2 * n
        need = (flat_err > limit).nonzero().squeeze(1)
        d_pos = domain_positions(params, r, padded)
        if need.numel() and d_pos.shape[0]:
            # Domain (y, x) in the image is (y/2, x/2) in the pooled image (coordinates are even).
            d_blocks = _blocks(pooled, d_pos // 2, r)
            found_d, found_t = search(ranges[need].reshape(-1, r, r), d_blocks, params, method)
            chosen = transforms.turn(d_blocks[found_d], found_t).reshape(-1, n)
            sc, oc, e = fit_codes(ranges[need], chosen, params)
            better = e < flat_err[need]  # quantisation can make a search result worse than flat
            idx = need[better]
            s_code[idx], o_code[idx], err[idx] = sc[better], oc[better], e[better]
            transform[idx], domain[idx] = found_t[better], found_d[better]
        split = (err > limit) if not last else torch.zeros(0, dtype=torch.bool)
        leaf = ~split if not last else torch.ones(k, dtype=torch.bool)
        unused = s_code == params.s_zero  # flat leaves store no domain or transform
        transform[unused], domain[unused] = 0, 0
        code.levels.append(Level(r, split, s_code[leaf], o_code[leaf], transform[leaf], domain[leaf]))
        if last or not split.any():
            # Deeper levels exist but are empty: record them so the layout is explicit.
            for r2 in sizes[level + 1 :]:
                empty = torch.zeros(0, dtype=torch.long)
                split_empty = torch.zeros(0, dtype=torch.bool)
                code.levels.append(Level(r2, split_empty, empty, empty, empty, empty))
            break
        positions = children(positions[split], r)
    return code


def pad_image(x: Tensor, padded: tuple[int, int]) -> Tensor:
    """(c h w) -> (c H W) by repeating the last row and column (no new values)."""
    h, w = x.shape[-2:]
    return F.pad(x[None], (0, padded[1] - w, 0, padded[0] - h), mode="replicate")[0]


def as_rows(x: Tensor) -> Tensor:
    """(1 c h w) -> (c h w) float32 (helper for callers holding a batch of one)."""
    return rearrange(x, "1 c h w -> c h w").float()
