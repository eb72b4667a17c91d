"""Collage search: a sparse collage's layout and sources chosen by least squares (the classical
fractal-coding search, for any grid modality), then optionally refined by gradient steps.

Every cell of every level of the full tree is compared with every signal-dependent source of its level
(one matrix product per chunk of cells). A cell's error is the one-step *collage* error of its best
code, ``|R - (sum_j w_j S_j + b)|^2``, which by the Collage theorem bounds the attractor's error up to
``1 / (1 - rho)``. With one source per range the best source and its weight are exact (clamped to the
contraction); with more, sources are added greedily (matching pursuit on the residual) and the chosen
ones refitted jointly. The tree is then cut where splitting pays: every cell whose RMS error exceeds
``split_tol`` splits, or, with a budget of ``ranges`` leaves per plane, the splits that remove the most
error per added leaf are taken first. Shapes: ``m`` cells, ``r`` samples per cell, ``S`` sources,
``j`` sources named per range.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
import torch
from torch import Tensor

from collagekit import sparse, tree
from collagekit.errors import CollagekitError
from collagekit.fit import FitSettings, refine
from collagekit.config import SearchConfig
from collagekit.interfaces import Encoder
from collagekit.operator import GridCollage
from collagekit.solver import Solver
from collagekit.sparse import SparseParams

CHUNK = 1 << 22  # (cell, source) pairs per matrix product: 16 MB temporaries


@dataclass
class LevelCodes:
    """The best code of every cell of one level (full tree order)."""

    index: Tensor  # (m j) int64
    weight: Tensor  # (m j) effective weights, sum |w| < rho
    bias: Tensor  # (m,)
    error: Tensor  # (m,) squared error of the code over the cell


def _fit(ranges: Tensor, chosen: Tensor, contraction: float) -> tuple[Tensor, Tensor, Tensor]:
    """(m r) ranges, (m j r) chosen sources -> least-squares weights (m j) inside the contraction ball,
    bias (m,), squared error (m,)."""
    rm, cm = ranges.mean(-1), chosen.mean(-1)
    rc, cc = ranges - rm[:, None], chosen - cm[..., None]
    gram = (cc @ cc.transpose(1, 2)).double()  # (m j j)
    # A light ridge keeps flat or repeated sources solvable; a system that still fails gets weight 0.
    ridge = 1e-9 * gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-12)[:, None, None]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    w, info = torch.linalg.solve_ex(gram + ridge * eye, (cc @ rc[..., None]).double())
    w = torch.where((info == 0)[:, None] & torch.isfinite(w[..., 0]), w[..., 0], 0.0).to(ranges.dtype)  # (m j)
    norm = w.abs().sum(-1, keepdim=True)
    w = w * (contraction / norm.clamp_min(contraction)).clamp_max(1.0)  # shrink only codes outside the ball
    err = ((rc - (w[..., None] * cc).sum(1)) ** 2).sum(-1)
    if w.shape[-1] > 1:
        # A joint fit outside the ball shrinks badly (large weights of opposite signs): where the first
        # source alone, its weight clamped, does better, keep that (so more sources never fit worse).
        first = cc[:, 0]
        s = ((rc * first).sum(-1) / (first * first).sum(-1).clamp_min(1e-12)).clamp(-contraction, contraction)
        alone = ((rc - s[:, None] * first) ** 2).sum(-1)
        better = alone < err
        w = torch.where(better[:, None], torch.nn.functional.pad(s[:, None], (0, w.shape[-1] - 1)), w)
        err = torch.where(better, alone, err)
    b = rm - (w * cm).sum(-1)
    return w, b, err


def _best_single(rc: Tensor, cands: Tensor, norms: Tensor, limit: float, taken: Tensor) -> Tensor:
    """(m r) centred ranges of one plane, (S r) its centred candidates, their squared norms (S,), the
    (m t) candidates each range already took -> (m,) index of the candidate not taken with the least
    error at its clamped least-squares weight. Works in chunks of ranges: S grows with the signal, so
    no (m S) array is ever whole (a 5.7 s stereo clip has m * S ~ 8e9 pairs at its finest level)."""
    chunk = max(1, CHUNK // max(1, cands.shape[0]))
    # Written in place: small results kept between the chunks' large temporaries fragment the heap.
    best = torch.empty(rc.shape[0], dtype=torch.long)
    safe = norms.clamp_min(1e-12)
    for i in range(0, rc.shape[0], chunk):
        cross = rc[i : i + chunk] @ cands.T  # (c S)
        # In place, the same values as s * (s * norms - 2 * cross): three (c S) temporaries, not six.
        s = torch.div(cross, safe).clamp_(-limit, limit)
        err = torch.mul(s, norms).sub_(cross, alpha=2).mul_(s)  # the error up to |R~|^2, the same for every candidate
        err.scatter_(1, taken[i : i + chunk], float("inf"))
        torch.argmin(err, -1, out=best[i : i + chunk])
    return best


def search_level(collage: GridCollage, padded: Tensor, spatial: tuple[int, ...], level: int, cells: tree.Cells) -> LevelCodes:
    """Best ``collage.sources`` sources, weights and bias of every cell of one level."""
    j = collage.sources
    ranges = sparse.cell_blocks(padded, cells)  # (m r)
    m = ranges.shape[0]
    if j == 0:
        bias = ranges.mean(-1)
        return LevelCodes(torch.zeros(m, 0, dtype=torch.long), ranges.new_zeros(m, 0), bias, ((ranges - bias[:, None]) ** 2).sum(-1))
    raw = sparse.level_candidates(collage, padded, spatial, level)  # (p S r)
    if j > raw.shape[1]:
        raise CollagekitError(f"a sparse range names {j} sources but level {level} has only {raw.shape[1]}")
    cands = raw - raw.mean(-1, keepdim=True)
    norms = (cands * cands).sum(-1)  # (p S)
    limit = collage.contraction
    index = torch.zeros(m, j, dtype=torch.long)
    residual = ranges - ranges.mean(-1, keepdim=True)
    for plane in range(cands.shape[0]):
        rows = (cells.plane == plane).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        res = residual[rows]
        for slot in range(j):  # matching pursuit: each pick explains what the earlier ones left
            pick = _best_single(res, cands[plane], norms[plane], limit, index[rows, :slot])
            index[rows, slot] = pick
            chosen = cands[plane][pick]
            s = ((res * chosen).sum(-1) / norms[plane][pick].clamp_min(1e-12)).clamp(-limit, limit)
            res = res - s[:, None] * chosen
    weight, bias, error = _fit(ranges, raw[cells.plane[:, None], index], collage.contraction)
    return LevelCodes(index, weight, bias, error)


def _cut(levels: list[LevelCodes], children: int, ranges: int | None, split_tol: float, planes: int, cell_sizes: list[int]) -> list[Tensor]:
    """Which full-tree cells are leaves, per level ((nodes,) bool, full-tree order)."""
    count = len(levels)
    top = levels[0].error.shape[0] // planes
    if ranges is None:
        leaf, exists = [], torch.ones(levels[0].error.shape[0], dtype=torch.bool)
        for level, codes in enumerate(levels):
            rms = (codes.error / cell_sizes[level]).sqrt()
            split = exists & (rms > split_tol) if level < count - 1 else torch.zeros_like(exists)
            leaf.append(exists & ~split)
            exists = split.repeat_interleave(children)
        return leaf
    # Greedy by gain per added leaf, per plane: a priority queue over the current leaves.
    errors = [codes.error.tolist() for codes in levels]
    leaf = [torch.zeros(len(e), dtype=torch.bool) for e in errors]

    def gain(level: int, node: int) -> float:
        kids = errors[level + 1][node * children : (node + 1) * children]
        return errors[level][node] - sum(kids)

    for plane in range(planes):
        heap: list[tuple[float, int, int]] = []
        for node in range(plane * top, (plane + 1) * top):
            leaf[0][node] = True
            if count > 1:
                heapq.heappush(heap, (-gain(0, node), 0, node))
        total = top
        while heap and total + children - 1 <= ranges:
            negative, level, node = heapq.heappop(heap)
            if -negative <= 0:
                break
            leaf[level][node] = False
            total += children - 1
            for kid in range(node * children, (node + 1) * children):
                leaf[level + 1][kid] = True
                if level + 1 < count - 1:
                    heapq.heappush(heap, (-gain(level + 1, kid), level + 1, kid))
    return leaf


def search(collage: GridCollage, x: Tensor, *, ranges: int | None = None, split_tol: float = 0.02) -> SparseParams:
    """x (b c *spatial) -> its sparse code: layout, sources, weights and biases by least squares.

    ``ranges``: leaves per plane (the code's size); None: split every cell whose RMS error exceeds
    ``split_tol`` (in the signal's units)."""
    if not collage.sparse:
        raise CollagekitError("the collage search codes sparse collages (mixing: sparse)")
    if collage.constants:
        raise CollagekitError("the collage search does not pick constant cells yet; use constants: 0 (or the fit encoder)")
    part = collage.partitioner
    b, c, *spatial_list = x.shape
    spatial = tuple(spatial_list)
    grid, top, levels = part.range_grid(spatial), part.range_size(1), part.levels
    sizes = tree.level_sizes(top, levels)
    planes = b * c
    if ranges is not None and ranges < math.prod(grid):
        raise CollagekitError(f"a budget of {ranges} ranges is below the {math.prod(grid)} top cells of this signal")
    with torch.no_grad():
        padded = sparse.pad_to(x.detach(), tuple(g * t for g, t in zip(grid, top)))
        nodes = tree.full_tree(planes, grid, top, levels)
        codes = [search_level(collage, padded, spatial, level, cells) for level, cells in enumerate(nodes)]
    children = 2 ** len(spatial)
    leaf = _cut(codes, children, ranges, split_tol, planes, [math.prod(s) for s in sizes])
    split, exists = [], torch.ones_like(leaf[0])
    for level in range(levels - 1):
        split.append((exists & ~leaf[level])[exists])
        exists = (exists & ~leaf[level]).repeat_interleave(children)
    # Leaves in full-tree order are the layout's order (tree.py): concatenate each level's kept cells.
    def kept(field: str) -> Tensor:
        return torch.cat([getattr(codes[level], field)[leaf[level]] for level in range(levels)])

    weight = kept("weight")
    return SparseParams(
        split=tuple(s.to(x.device) for s in split),
        index=kept("index").to(x.device),
        weight=sparse.raw_weights(weight, collage.contraction).to(x),
        const_index=torch.zeros(weight.shape[0], 0, dtype=torch.long, device=x.device),
        aux=x.new_zeros(weight.shape[0], 0),
        bias=kept("bias").to(x),
    )


class SearchEncoder(Encoder):
    """``search``: the least-squares collage search for sparse collages, then (optionally) the fit
    encoder's gradient steps on the weights and biases with the layout and sources kept."""

    history: list[float]

    Config = SearchConfig

    def encode(self, x: Tensor, collage: GridCollage, solver: Solver) -> SparseParams:
        cfg = self.config
        ranges = cfg.ranges
        if cfg.range_samples is not None:
            top = math.prod(collage.partitioner.range_grid(tuple(x.shape[2:])))
            ranges = max(top, int(math.prod(x.shape[2:]) / cfg.range_samples))
        params = search(collage, x, ranges=ranges, split_tol=cfg.split_tol)
        settings = FitSettings(steps=cfg.steps, collage_steps=cfg.collage_steps, lr=cfg.lr)
        refined, self.history = refine(x, collage, solver, params, settings)
        return refined
