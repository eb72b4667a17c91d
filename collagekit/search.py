"""Collage search: a sparse collage's layout and sources chosen by least squares (the classical
fractal-coding search, for any grid modality), then optionally refined by gradient steps.

Every cell of every level of the full tree is compared with every signal-dependent source of its level
(one matrix product per chunk of cells), or, with a :class:`~collagekit.shortlist.Shortlist`, only with
the sources of the classes its network lists for the cell (the amortized search; :func:`best_pairs`
gives what it learns from). A cell's error is the one-step *collage* error of its best
code, ``|R - (sum_j w_j S_j + b)|^2``, which by the Collage theorem bounds the attractor's error up to
``1 / (1 - rho)``. With one source per range the best source and its weight are exact (clamped to the
contraction); with more, sources are added greedily (matching pursuit on the residual) and the chosen
ones refitted jointly. With a :class:`Quantiser` the weights are rounded to the file's lattice and the
bias refitted to the rounded weights before it is rounded in turn, so every error the cut compares is
that of a code a file can store. The tree is then cut where splitting pays: every cell whose RMS error
exceeds ``split_tol`` splits; or, with a budget of ``ranges`` leaves per plane, the splits that remove
the most error per added leaf are taken first; or, with ``lmbda`` and a :class:`RateModel`, the cut
minimises ``D + lmbda * R`` (squared error plus the estimated bits of every leaf's code and the split
flags), and every leaf takes the cheapest of its candidate codes: the best with all ``j`` sources, with
the first ``j - 1``, ..., 1 of them (refitted), or none (a *flat* leaf: its bias alone).
:func:`search_tree` does the comparisons once; its :meth:`SearchTree.cut` may be called again (a codec
re-estimates its rates from a first cut). With ``prune``, a cell whose best code already errs by at most
``prune`` is taken not to split and the cells below it are not searched (a rate-distortion cut at
``lmbda`` splits a cell only where four children's codes cost less, so ``prune = lmbda * bits`` skips
cells whose split could save at most ``bits``). Shapes: ``m`` cells, ``r`` samples per cell, ``S`` sources,
``j`` sources named per range, ``k`` candidate codes per cell, ``q`` weight symbols.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from collagekit import sparse, tree
from collagekit.config import SearchConfig
from collagekit.errors import CollagekitError
from collagekit.fit import FitSettings, refine
from collagekit.interfaces import Encoder
from collagekit.operator import GridCollage
from collagekit.shortlist import Shortlist
from collagekit.solver import Solver
from collagekit.sparse import SparseParams

CHUNK = 1 << 20  # (cell, source) pairs per matrix product: 4 MB buffers, held in the cache (3x faster than 16 MB)
ROW_GROUP = 16  # candidates per group in the two-stage row minimum


@dataclass(frozen=True)
class Quantiser:
    """Uniform lattices of the effective weights (``weight_step``; at most ``contraction`` in sum of
    magnitudes) and the biases (``bias_step``), as a file stores them."""

    weight_step: float
    bias_step: float

    def weights(self, w: Tensor, contraction: float) -> Tensor:
        """(m j) weights inside the ball -> the nearest lattice weights; where rounding to nearest leaves
        the ball (several sources), every magnitude is rounded down instead, which cannot."""
        near = (w / self.weight_step).round()
        down = (w / self.weight_step).trunc()
        outside = (near.abs().sum(-1, keepdim=True) * self.weight_step) > contraction + 1e-6
        return torch.where(outside, down, near) * self.weight_step

    def bias(self, b: Tensor) -> Tensor:
        return (b / self.bias_step).round() * self.bias_step


@dataclass(frozen=True)
class RateModel:
    """Estimated bits of a leaf's code, for the rate-distortion cut: ``weight_bits`` (q,) per weight
    symbol (the weight ``(k - Z) * step`` has symbol ``k``, ``Z`` = ``(q - 1) / 2``; symbol ``Z``, weight 0,
    needs no index), ``index_bits`` per level, ``bias_bits`` per leaf (``flat_bias_bits`` for a leaf
    naming no source, where a codec codes those biases apart; None: the same) and ``split_bits`` per flag."""

    weight_bits: Tensor
    index_bits: tuple[float, ...]
    bias_bits: float
    split_bits: float = 1.0
    flat_bias_bits: float | None = None


@dataclass
class LevelCodes:
    """The candidate codes of every cell of one level (full tree order): candidate 0 the best code with
    all ``j`` sources, then the code of its first ``j - 1``, ..., 1 sources (unused slots: weight 0,
    index 0), then the flat code (no source: the cell's mean); with ``j = 0`` only the flat one."""

    index: Tensor  # (m k j) int64
    weight: Tensor  # (m k j) effective weights, sum |w| < rho
    bias: Tensor  # (m k)
    error: Tensor  # (m k) squared error of each code over the cell


def _fit(ranges: Tensor, chosen: Tensor, contraction: float, quantiser: Quantiser | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(m r) ranges, (m j r) chosen sources -> least-squares weights (m j) inside the contraction ball,
    bias (m,), squared error (m,); with ``quantiser``, the best weights rounded to its lattice, the bias
    refitted to them and rounded, and the error of that code."""
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
    if quantiser is not None:
        w = quantiser.weights(w, contraction)
    err = ((rc - (w[..., None] * cc).sum(1)) ** 2).sum(-1)
    if w.shape[-1] > 1:
        # A joint fit outside the ball shrinks badly (large weights of opposite signs): where the first
        # source alone, its weight clamped, does better, keep that (so more sources never fit worse).
        first = cc[:, 0]
        s = ((rc * first).sum(-1) / (first * first).sum(-1).clamp_min(1e-12)).clamp(-contraction, contraction)
        if quantiser is not None:
            s = quantiser.weights(s[:, None], contraction)[:, 0]
        alone = ((rc - s[:, None] * first) ** 2).sum(-1)
        better = alone < err
        w = torch.where(better[:, None], torch.nn.functional.pad(s[:, None], (0, w.shape[-1] - 1)), w)
        err = torch.where(better, alone, err)
    b = rm - (w * cm).sum(-1)
    if quantiser is not None:
        # The residual after the exact bias has zero mean, so a bias off by e adds r e^2.
        exact, b = b, quantiser.bias(b)
        err = err + ranges.shape[-1] * (b - exact) ** 2
    return w, b, err


def _flat(ranges: Tensor, quantiser: Quantiser | None) -> tuple[Tensor, Tensor]:
    """(m r) -> the bias (m,) and squared error (m,) of each cell's code without sources (its mean)."""
    mean = ranges.mean(-1)
    bias = mean if quantiser is None else quantiser.bias(mean)
    return bias, ((ranges - mean[:, None]) ** 2).sum(-1) + ranges.shape[-1] * (bias - mean) ** 2


def row_min(err: Tensor) -> tuple[Tensor, Tensor]:
    """(c m) -> (min (c,), argmin (c,)).

    For long rows several times faster on the CPU than ``err.min(1)`` (whose indexed reduction is not
    vectorised): the first ``g`` columns (a multiple of ROW_GROUP) are cut into ROW_GROUP contiguous
    slices whose elementwise minimum (a vectorised ``amin`` across slices) is searched with indices;
    then only the ROW_GROUP entries at the winning offset are compared. The remaining ``m - g`` columns
    are searched directly. Rows under 512 candidates are searched directly: there the two stages cost
    more than they save."""
    c, m = err.shape
    width = m // ROW_GROUP
    if width < 2 * ROW_GROUP:
        return err.min(1)
    slices = err[:, : width * ROW_GROUP].reshape(c, ROW_GROUP, width)
    value, offset = slices.amin(1).min(1)
    which = slices[torch.arange(c), :, offset].argmin(1)
    index = which * width + offset
    if m > width * ROW_GROUP:
        tail_value, tail_index = err[:, width * ROW_GROUP :].min(1)
        better = tail_value < value
        value, index = torch.where(better, tail_value, value), torch.where(better, tail_index + width * ROW_GROUP, index)
    return value, index


def _best_single(rc: Tensor, cands: Tensor, norms: Tensor, limit: float, taken: Tensor) -> tuple[Tensor, Tensor]:
    """(m r) centred ranges of one plane, (S r) centred candidates, their squared norms (S,), the (m t)
    candidates each range already took (-1: none of these) -> (m,) index of the candidate not taken
    with the least error at its clamped least-squares weight, and that error minus ``|R~|^2`` (m,).
    Works in chunks of ranges: S grows with the signal, so no (m S) array is ever whole (a 5.7 s stereo
    clip has m * S ~ 8e9 pairs at its finest level)."""
    chunk = max(1, CHUNK // max(1, cands.shape[0]))
    best = torch.empty(rc.shape[0], dtype=torch.long)
    least = torch.empty(rc.shape[0], dtype=rc.dtype)
    safe = norms.clamp_min(1e-12)
    # Two (c S) buffers written in place by every chunk: a fresh large tensor per operation costs more
    # in page faults than the arithmetic (3x slower at r = 16).
    rows = min(chunk, rc.shape[0])
    cross_buffer, weight_buffer = rc.new_empty(rows, cands.shape[0]), rc.new_empty(rows, cands.shape[0])
    for i in range(0, rc.shape[0], chunk):
        n = min(chunk, rc.shape[0] - i)
        cross = torch.matmul(rc[i : i + n], cands.T, out=cross_buffer[:n])  # (c S)
        s = torch.div(cross, safe, out=weight_buffer[:n]).clamp_(-limit, limit)
        # s * (s * norms - 2 * cross): the error up to |R~|^2, the same for every candidate
        err = cross.mul_(-2).addcmul_(s, norms).mul_(s)
        for column in taken[i : i + n].T:
            hit = (column >= 0).nonzero().squeeze(1)
            err[hit, column[hit]] = float("inf")
        least[i : i + n], best[i : i + n] = row_min(err)
    return best, least


def _best_listed(rc: Tensor, cands: Tensor, norms: Tensor, limit: float, taken: Tensor, listed: Tensor, source_class: Tensor) -> Tensor:
    """As :func:`_best_single`, but each range is compared only with the sources whose class
    (``source_class`` (S,)) is one of its ``listed`` classes (m b, distinct per range): one exhaustive
    search per class over every range that lists it. A range none of whose classes holds a source gets
    source 0 (its exact fit still decides)."""
    m, probes = listed.shape
    best = torch.zeros(m, dtype=torch.long)
    classes = int(max(int(listed.max()), int(source_class.max()))) + 1
    # Sources sorted by class once, so each class's sources are a slice, not a gather.
    by_class = source_class.argsort()
    cands, norms = cands[by_class], norms[by_class]
    ends = torch.bincount(source_class, minlength=classes).cumsum(0).tolist()
    listing = listed.reshape(-1).argsort()  # positions in (m b) order, grouped by class
    listing_ends = torch.bincount(listed.reshape(-1), minlength=classes).cumsum(0).tolist()
    position = torch.empty_like(by_class)
    position[by_class] = torch.arange(by_class.numel())  # each source's place in the sorted order
    found: list[tuple[Tensor, Tensor, Tensor]] = []  # per class: its ranges, their best error and pick (sorted order)
    for k in range(classes):
        rows = listing[(listing_ends[k - 1] if k else 0) : listing_ends[k]] // probes  # distinct: a range lists a class once
        start, end = (ends[k - 1] if k else 0), ends[k]
        if rows.numel() == 0 or end == start:
            continue
        held = taken[rows]
        if held.numel():
            local = position[held.clamp_min(0)] - start
            held = torch.where((held >= 0) & (local >= 0) & (local < end - start), local, -1)
        pick, err = _best_single(rc[rows], cands[start:end], norms[start:end], limit, held)
        found.append((rows, err, start + pick))
    if found:
        # Each range's best over its classes at once (per-class updates cost more than the comparisons
        # of a small class): the first of its entries once stably sorted by error (ties: the lower class).
        rows, err, pick = (torch.cat(parts) for parts in zip(*found))
        order = err.argsort(stable=True)
        rows, pick = rows[order], pick[order]
        first = torch.full((m,), order.numel(), dtype=torch.long).scatter_reduce_(0, rows, torch.arange(order.numel()), "amin")
        hit = first < order.numel()
        best[hit] = by_class[pick[first[hit]]]
    return best


def search_level(
    collage: GridCollage,
    padded: Tensor,
    spatial: tuple[int, ...],
    level: int,
    cells: tree.Cells,
    quantiser: Quantiser | None = None,
    shortlist: Shortlist | None = None,
    probes: int = 2,
) -> LevelCodes:
    """Best ``collage.sources`` sources, weights and bias of every cell of one level (among the
    sources of each range's ``probes`` most likely classes where the ``shortlist`` has a network for
    this level's cell size)."""
    j = collage.sources
    ranges = sparse.cell_blocks(padded, cells)  # (m r)
    m = ranges.shape[0]
    flat_bias, flat_error = _flat(ranges, quantiser)
    flat = (torch.zeros(m, j, dtype=torch.long), ranges.new_zeros(m, j), flat_bias, flat_error)
    if j == 0:
        return LevelCodes(*(t[:, None] for t in flat))
    if m == 0:  # a pruned search left no cell of this level: nothing to pool sources for
        return LevelCodes(torch.zeros(0, j + 1, j, dtype=torch.long), ranges.new_zeros(0, j + 1, j), ranges.new_zeros(0, j + 1), ranges.new_zeros(0, j + 1))
    raw = sparse.level_candidates(collage, padded, spatial, level)  # (p S r)
    if j > raw.shape[1]:
        raise CollagekitError(f"a sparse range names {j} sources but level {level} has only {raw.shape[1]}")
    cands = raw - raw.mean(-1, keepdim=True)
    norms = (cands * cands).sum(-1)  # (p S)
    limit = collage.contraction
    index = torch.zeros(m, j, dtype=torch.long)
    residual = ranges - ranges.mean(-1, keepdim=True)
    listed = shortlist is not None and shortlist.covers(ranges.shape[-1])
    for plane in range(cands.shape[0]):
        rows = (cells.plane == plane).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        res = residual[rows]
        if listed:
            range_classes, source_class = shortlist.lists(ranges[rows], raw[plane], probes)
        for slot in range(j):  # matching pursuit: each pick explains what the earlier ones left
            if listed:
                pick = _best_listed(res, cands[plane], norms[plane], limit, index[rows, :slot], range_classes, source_class)
            else:
                pick, _ = _best_single(res, cands[plane], norms[plane], limit, index[rows, :slot])
            index[rows, slot] = pick
            chosen = cands[plane][pick]
            s = ((res * chosen).sum(-1) / norms[plane][pick].clamp_min(1e-12)).clamp(-limit, limit)
            res = res - s[:, None] * chosen
    chosen = raw[cells.plane[:, None], index]  # (m j r)
    candidates = []
    for t in range(j, 0, -1):  # all j sources, then ever fewer of the first ones
        weight, bias, error = _fit(ranges, chosen[:, :t], collage.contraction, quantiser)
        pad = (0, j - t)
        candidates.append((torch.nn.functional.pad(index[:, :t], pad), torch.nn.functional.pad(weight, pad), bias, error))
    candidates.append(flat)
    return LevelCodes(*(torch.stack(parts, 1) for parts in zip(*candidates)))


def _cut(levels: list[LevelCodes], children: int, ranges: int | None, split_tol: float, planes: int, cell_sizes: list[int]) -> list[Tensor]:
    """Which full-tree cells are leaves, per level ((nodes,) bool, full-tree order)."""
    count = len(levels)
    top = levels[0].error.shape[0] // planes
    if ranges is None:
        leaf, exists = [], torch.ones(levels[0].error.shape[0], dtype=torch.bool)
        for level, codes in enumerate(levels):
            rms = (codes.error[:, 0] / cell_sizes[level]).sqrt()
            split = exists & (rms > split_tol) if level < count - 1 else torch.zeros_like(exists)
            leaf.append(exists & ~split)
            exists = split.repeat_interleave(children)
        return leaf
    # Greedy by gain per added leaf, per plane: a priority queue over the current leaves.
    errors = [codes.error[:, 0].tolist() for codes in levels]
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


def _leaf_costs(codes: LevelCodes, level: int, lmbda: float, rate: RateModel, quantiser: Quantiser) -> tuple[Tensor, Tensor]:
    """Every cell's least ``D + lmbda * R`` as a leaf (m,), and which candidate code gives it (m,)."""
    bits = rate.weight_bits.to(codes.error)
    zero = (bits.shape[0] - 1) // 2
    symbol = ((codes.weight / quantiser.weight_step).round().long() + zero).clamp(0, bits.shape[0] - 1)  # (m k j)
    named = (symbol != zero).sum(-1)  # a zero weight names no source: its index is not coded
    bias = rate.bias_bits if rate.flat_bias_bits is None else torch.where(named > 0, rate.bias_bits, rate.flat_bias_bits)
    cost = codes.error + lmbda * (bits[symbol].sum(-1) + named * rate.index_bits[level] + bias)  # (m k)
    return cost.min(-1)


def _cut_rd(levels: list[LevelCodes], children: int, lmbda: float, rate: RateModel, quantiser: Quantiser) -> tuple[list[Tensor], list[Tensor]]:
    """The cut minimising ``D + lmbda * R`` (exact, bottom up: a cell splits where its children's best
    costs sum below its own) -> (leaves, each cell's chosen candidate code) per level, full-tree order."""
    count = len(levels)
    if len(rate.index_bits) != count:
        raise CollagekitError(f"the rate model has index bits for {len(rate.index_bits)} levels, the tree has {count}")
    best: list[Tensor] = [torch.empty(0)] * count
    split: list[Tensor] = [torch.empty(0)] * count
    choice: list[Tensor] = [torch.empty(0)] * count
    for level in reversed(range(count)):
        cost, choice[level] = _leaf_costs(levels[level], level, lmbda, rate, quantiser)
        if level == count - 1:
            split[level] = torch.zeros_like(cost, dtype=torch.bool)
        else:
            kids = best[level + 1].view(-1, children).sum(1)
            split[level] = kids < cost
            cost = torch.minimum(kids, cost) + lmbda * rate.split_bits  # every cell above the last level has a flag
        best[level] = cost
    leaf, exists = [], torch.ones_like(split[0])
    for level in range(count):
        leaf.append(exists & ~split[level])
        exists = (exists & split[level]).repeat_interleave(children)
    return leaf, choice


@dataclass
class SearchTree:
    """Every cell's best code at every level of the full tree (:func:`search_tree`), ready to be cut."""

    collage: GridCollage
    codes: list[LevelCodes]
    planes: int
    cell_sizes: list[int]  # samples per cell at each level
    quantiser: Quantiser | None
    like: Tensor  # an empty tensor of the signal's dtype and device
    prune: float = 0.0  # the search's ``prune``: cells it left unsearched have an infinite error

    def cut(
        self, *, ranges: int | None = None, split_tol: float = 0.02, lmbda: float | None = None, rate: RateModel | None = None
    ) -> SparseParams:
        """The sparse code of one cut: ``lmbda`` with ``rate`` (needs a quantiser): minimise ``D + lmbda * R``,
        D in squared signal units summed over samples, R in bits; else ``ranges`` leaves per plane; else
        every cell whose RMS error exceeds ``split_tol`` splits."""
        codes, levels = self.codes, len(self.codes)
        children = 2 ** len(self.collage.partitioner.range_size(1))
        if lmbda is not None:
            if rate is None or self.quantiser is None:
                raise CollagekitError("a rate-distortion cut (lmbda) needs a rate model and a quantiser")
            leaf, choice = _cut_rd(codes, children, lmbda, rate, self.quantiser)
        else:
            if self.prune > 0:
                raise CollagekitError("a pruned search tree is cut by lmbda only")
            top = codes[0].error.shape[0] // self.planes
            if ranges is not None and ranges < top:
                raise CollagekitError(f"a budget of {ranges} ranges is below the {top} top cells of this signal")
            leaf = _cut(codes, children, ranges, split_tol, self.planes, self.cell_sizes)
            choice = [torch.zeros(len(mask), dtype=torch.long) for mask in leaf]  # the codes with every source
        split, exists = [], torch.ones_like(leaf[0])
        for level in range(levels - 1):
            split.append((exists & ~leaf[level])[exists])
            exists = (exists & ~leaf[level]).repeat_interleave(children)

        # Leaves in full-tree order are the layout's order (tree.py): concatenate each level's kept cells.
        def kept(field: str) -> Tensor:
            parts = []
            for level in range(levels):
                value = getattr(codes[level], field)  # (m k ...)
                pick = choice[level].view(-1, 1, *[1] * (value.ndim - 2)).expand(-1, 1, *value.shape[2:])
                parts.append(value.gather(1, pick)[:, 0][leaf[level]])
            return torch.cat(parts)

        weight = kept("weight")
        device = self.like.device
        return SparseParams(
            split=tuple(s.to(device) for s in split),
            index=kept("index").to(device),
            weight=sparse.raw_weights(weight, self.collage.contraction).to(self.like),
            const_index=torch.zeros(weight.shape[0], 0, dtype=torch.long, device=device),
            aux=self.like.new_zeros(weight.shape[0], 0),
            bias=kept("bias").to(self.like),
        )


def _searched(codes: LevelCodes, mask: Tensor) -> LevelCodes:
    """The codes of the cells ``mask`` (m,) selects -> every cell's, the others with an infinite error
    (so no cut makes them leaves or splits their parents)."""
    full = []
    for name in ("index", "weight", "bias", "error"):
        part = getattr(codes, name)
        value = part.new_full((mask.shape[0], *part.shape[1:]), float("inf") if name == "error" else 0)
        value[mask] = part
        full.append(value)
    return LevelCodes(*full)


def search_tree(
    collage: GridCollage, x: Tensor, quantiser: Quantiser | None = None, shortlist: Shortlist | None = None, probes: int = 2, prune: float = 0.0
) -> SearchTree:
    """x (b c *spatial) -> the best code of every cell of the full tree (the expensive part of a search);
    with a ``shortlist``, each range is compared only with the sources of its ``probes`` most likely
    classes (the amortized search). ``prune`` > 0: a cell whose best code's squared error is at most
    ``prune`` is taken not to split, and its subtree is not searched; for a rate-distortion cut at
    ``lmbda``, ``prune = lmbda * bits`` skips the cells whose split could save at most ``bits``."""
    if not collage.sparse:
        raise CollagekitError("the collage search codes sparse collages (mixing: sparse)")
    if collage.constants:
        raise CollagekitError("the collage search does not pick constant cells yet; use constants: 0 (or the fit encoder)")
    part = collage.partitioner
    b, c, *spatial_list = x.shape
    spatial = tuple(spatial_list)
    grid, top, levels = part.range_grid(spatial), part.range_size(1), part.levels
    sizes = tree.level_sizes(top, levels)
    children = 2 ** len(top)
    with torch.no_grad():
        padded = sparse.pad_to(x.detach(), tuple(g * t for g, t in zip(grid, top)))
        nodes = tree.full_tree(b * c, grid, top, levels)
        codes: list[LevelCodes] = []
        searched = torch.ones(len(nodes[0]), dtype=torch.bool)
        for level, cells in enumerate(nodes):
            if level:
                searched = (searched & (codes[-1].error.min(-1).values > prune)).repeat_interleave(children)
            found = search_level(collage, padded, spatial, level, cells.select(searched), quantiser, shortlist, probes)
            codes.append(found if bool(searched.all()) else _searched(found, searched))
    return SearchTree(collage, codes, b * c, [math.prod(s) for s in sizes], quantiser, x.new_empty(0), prune)


def best_pairs(collage: GridCollage, x: Tensor, level: int) -> tuple[Tensor, Tensor, Tensor]:
    """x (b c *spatial) -> the blocks of every cell of ``level`` (m r), the source the exhaustive search
    picks for each (m r) and every source of the level (p S r), p = b * c planes: what a
    :class:`~collagekit.shortlist.Shortlist` learns from."""
    part = collage.partitioner
    b, c, *spatial_list = x.shape
    spatial = tuple(spatial_list)
    grid, top = part.range_grid(spatial), part.range_size(1)
    with torch.no_grad():
        padded = sparse.pad_to(x.detach(), tuple(g * t for g, t in zip(grid, top)))
        cells = tree.full_tree(b * c, grid, top, part.levels)[level]
        codes = search_level(collage, padded, spatial, level, cells)  # exhaustive: no shortlist
        ranges = sparse.cell_blocks(padded, cells)  # (m r)
        raw = sparse.level_candidates(collage, padded, spatial, level)  # (p S r)
        matches = raw[cells.plane, codes.index[:, 0, 0]]  # the first (best single) source of the best code
    return ranges, matches, raw


def search(collage: GridCollage, x: Tensor, *, ranges: int | None = None, split_tol: float = 0.02) -> SparseParams:
    """x (b c *spatial) -> its sparse code: layout, sources, weights and biases by least squares.

    ``ranges``: leaves per plane (the code's size); None: split every cell whose RMS error exceeds
    ``split_tol`` (in the signal's units)."""
    return search_tree(collage, x).cut(ranges=ranges, split_tol=split_tol)


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
