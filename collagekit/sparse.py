"""Sparse collages: every range cell names a few sources instead of weighing all of them.

For leaf (range cell) ``k``, per channel::

    R_k = sum_j w[k, j] * S_index[k, j]  +  sum_i aux[k, i] * U_const_index[k, i]  +  bias[k]

where ``S`` are the level's signal-dependent sources — pooled domains, then each dependent auxiliary's
variants of them, in the order a dense collage uses — and ``U`` its constant cells (learned patches).
Contractivity by construction: ``w[k] = rho * a[k] / max(1, |a[k]|_1)``, so ``sum_j |w[k, j]| <= rho < 1``
for any raw ``a``; every weight vector inside that ball has one exact raw value (``a = w / rho``), which
is what lets a classical code (PIFS: one source, a quantised contrast) be stored as is, and the
gradient never saturates as ``tanh`` does near the bound.

Range cells may be the leaves of a tree (:mod:`collagekit.tree`); every plane (one channel of one
signal) has its own tree and its own sources. A step pools the signal once per level geometry
(:class:`~collagekit.interfaces.DomainBlocks`) and reads every output sample with one gather from the
pooled signals: the gathers are worked out once per code and scale (:class:`SparsePlan`), so a step
costs a pooling, a gather and a multiply-add whatever the number of domains.

Shapes: ``m`` leaves of all planes (level by level, in layout order), ``j`` named signal-dependent
sources per leaf, ``i`` named constant cells per leaf, ``N`` samples of all planes of the padded signal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from collagekit import tree
from collagekit.errors import CollagekitError

if TYPE_CHECKING:
    from collagekit.operator import GridCollage


@dataclass
class SparseParams:
    """One batch's sparse collage code.

    split:       per level 0 .. L-2, (nodes,) bool — the trees (:mod:`collagekit.tree`); () for one level
    index:       (m j) int64  signal-dependent sources of each leaf, in [0, S_level)
    weight:      (m j)        raw ``a``: w = rho * a / max(1, |a|_1)
    const_index: (m i) int64  constant cells of each leaf
    aux:         (m i)        their weights (unconstrained: constants do not move with the signal)
    bias:        (m,)         one offset per leaf
    """

    split: tuple[Tensor, ...]
    index: Tensor
    weight: Tensor
    const_index: Tensor
    aux: Tensor
    bias: Tensor
    # Gather plans of this layout, per (spatial, scale, device); shared by maps that keep the integers.
    _plans: dict = field(default_factory=dict, repr=False, compare=False)

    KEYS = ("index", "weight", "const_index", "aux", "bias")

    def tensors(self) -> dict[str, Tensor]:
        out = {f"split.{level}": flags for level, flags in enumerate(self.split)}
        out.update({key: getattr(self, key) for key in self.KEYS})
        return out

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.tensors().values())

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], levels: int) -> SparseParams:
        return cls(tuple(tensors[f"split.{level}"] for level in range(levels - 1)), *(tensors[key] for key in cls.KEYS))

    def map(self, fn: Callable[[Tensor], Tensor]) -> SparseParams:
        """``fn`` applied to every tensor (integers too: moving devices); plans survive when the integer
        tensors come back unchanged (``fn`` returned them as they were, e.g. a float-only transform)."""
        split = tuple(fn(t) for t in self.split)
        values = {key: fn(getattr(self, key)) for key in self.KEYS}
        same = all(a is b for a, b in zip(split, self.split)) and all(values[k] is getattr(self, k) for k in ("index", "const_index"))
        return SparseParams(split, **values, _plans=self._plans if same else {})

    @property
    def leaves(self) -> int:
        return int(self.bias.shape[0])


def effective_weights(weight: Tensor, contraction: float) -> Tensor:
    """(m j) raw -> (m j) weights with sum |w| <= contraction per leaf."""
    return contraction * weight / weight.abs().sum(-1, keepdim=True).clamp_min(1.0)


def raw_weights(w: Tensor, contraction: float) -> Tensor:
    """The inverse of :func:`effective_weights` for weights inside the ball (a classical code's contrasts)."""
    return w / contraction


@dataclass
class SparsePlan:
    """The gathers of one sparse code at one scale (integers only; the weights are applied per step).

    pools:       (window, pooled) sizes at this scale, one per distinct level geometry, in the order their
                 flattened pooled signals are concatenated
    source:      (N j) int     for every output sample, where each named source's value lies in the
                 concatenated pooled signals
    sign:        (m j)         the sign of each named variant
    leaf:        (N,) int      the leaf of every output sample
    constant:    (N i) int     where each named constant cell's value lies in the concatenated constant cells
    (int: int64 as built, int32 once cached by :func:`plan_for` where every index fits)
    const_sizes: cell size of every level that has leaves, for resampling the constant cells
    """

    planes: int
    padded: tuple[int, ...]
    pools: list[tuple[tuple[int, ...], tuple[int, ...]]]
    source: Tensor
    sign: Tensor
    leaf: Tensor
    constant: Tensor
    const_sizes: list[tuple[int, ...]]


def _strides(size: tuple[int, ...]) -> Tensor:
    """Row-major strides of a grid of this size, (ndim,) int64."""
    strides = [math.prod(size[i + 1 :]) for i in range(len(size))]
    return torch.tensor(strides, dtype=torch.long)


@lru_cache(maxsize=64)
def _cell_offsets(cell: tuple[int, ...], grid: tuple[int, ...]) -> Tensor:
    """(prod(cell),) int64: flat offsets in a row-major ``grid`` of every position of a ``cell``-size
    block (row-major within the block), relative to the block's corner. (Cached: callers only read it.)"""
    offsets = torch.zeros((), dtype=torch.long)
    for extent, stride in zip(cell, _strides(grid).tolist()):
        offsets = (offsets[..., None] + torch.arange(extent) * stride)
    return offsets.reshape(-1)


def _variant_table(collage: GridCollage, size: tuple[int, ...], domains: int) -> tuple[Tensor, Tensor]:
    """Rows of source ids ``row * n + d``: the identity, then every dependent auxiliary's variants, as
    ``(perm (u p), sign (u,))``; checked against each auxiliary's count."""
    p = math.prod(size)
    perms, signs = [torch.arange(p)[None]], [torch.ones(1)]
    for aux in collage.dependent:
        found = aux.variants(size)
        if found is None:
            raise CollagekitError(f"auxiliary cells {aux.config.name!r} cannot be used in a sparse collage (they are not signed permutations)")
        perm, sign = found
        if perm.shape[0] * domains != aux.count(domains):
            raise CollagekitError(f"auxiliary cells {aux.config.name!r} give {aux.count(domains)} cells but {perm.shape[0]} variants")
        perms.append(perm.long())
        signs.append(sign.float())
    return torch.cat(perms), torch.cat(signs)


def level_sources(collage: GridCollage, spatial: tuple[int, ...], level: int) -> int:
    """S at ``level``: its domains times (1 + each dependent auxiliary's variants)."""
    n = collage.partitioner.domain_blocks(spatial, level).origins.shape[0]
    size = tree.level_sizes(collage.partitioner.range_size(1), collage.partitioner.levels)[level]
    return n * _variant_table(collage, size, n)[0].shape[0]


def planes_of(collage: GridCollage, params: SparseParams, spatial: tuple[int, ...]) -> int:
    """How many planes (b c) a code holds, from its layout."""
    top = math.prod(collage.partitioner.range_grid(spatial))
    count = params.split[0].shape[0] if params.split else params.leaves
    if count % top:
        raise CollagekitError(f"a sparse code with {count} top cells does not fit a signal of {top} top cells per plane")
    return count // top


def build_plan(collage: GridCollage, params: SparseParams, spatial: tuple[int, ...], scale: int) -> SparsePlan:
    """Work out every gather of ``params`` at ``scale``; checks every index against the geometry."""
    part = collage.partitioner
    grid, top, levels = part.range_grid(spatial), part.range_size(1), part.levels
    planes = planes_of(collage, params, spatial)
    leaves = tree.leaves(tuple(params.split), planes, grid, top, levels)
    m = sum(len(cells) for cells in leaves)
    j, i = params.index.shape[-1], params.const_index.shape[-1]
    for key, shape in (("index", (m, j)), ("weight", (m, j)), ("const_index", (m, i)), ("aux", (m, i)), ("bias", (m,))):
        if tuple(getattr(params, key).shape) != shape:
            raise CollagekitError(f"sparse code: {key} has shape {tuple(getattr(params, key).shape)}, the layout needs {shape}")
    padded = tuple(g * t * scale for g, t in zip(grid, top))
    big = math.prod(padded)
    plane_offsets = torch.arange(planes) * big
    out_strides = _strides(padded)
    constants = sum(a.count(1) for a in collage.constant)  # constant cells do not depend on N (checked below)

    # Every sample is written below: the leaves tile every plane exactly once.
    source = torch.empty(planes * big, j, dtype=torch.long)
    leaf = torch.empty(planes * big, dtype=torch.long)
    constant = torch.empty(planes * big, i, dtype=torch.long)
    sign = torch.ones(m, j)
    pools: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    pool_offset: dict[tuple, int] = {}
    used = 0  # length of the concatenated pooled signals so far
    const_sizes: list[tuple[int, ...]] = []
    first = 0  # first leaf of the level
    index, const_index = params.index.cpu(), params.const_index.cpu()
    for level, cells in enumerate(leaves):
        count = len(cells)
        if count == 0:
            continue
        size = tuple(s * scale for s in cells.size)
        p = math.prod(size)
        rows = slice(first, first + count)
        # Where the level's output samples go.
        corner = (cells.origin * scale) @ out_strides + plane_offsets[cells.plane]  # (m_l,)
        out = corner[:, None] + _cell_offsets(size, padded)[None]  # (m_l p)
        ids = torch.arange(first, first + count)
        leaf[out.reshape(-1)] = ids.repeat_interleave(p)
        if j:
            blocks = part.domain_blocks(spatial, level)
            if not blocks.whole and not collage.pooler.block_local:
                raise CollagekitError(f"pooler {collage.pooler.config.name!r} cannot pool local domains of a sparse collage (it is not block-local)")
            n = blocks.origins.shape[0]
            perm, signs = _variant_table(collage, size, n)
            ids_j = index[rows]
            if ids_j.numel() and (int(ids_j.min()) < 0 or int(ids_j.max()) >= n * perm.shape[0]):
                raise CollagekitError(f"sparse code: a source index at level {level} lies outside [0, {n * perm.shape[0]})")
            window = tuple(w * scale for w in blocks.window)
            pooled = tuple(q * scale for q in blocks.pooled)
            key = (window, pooled)
            if key not in pool_offset:
                pool_offset[key] = used
                pools.append(key)
                used += planes * math.prod(pooled)
            row, domain = ids_j // n, ids_j % n
            pooled_strides = _strides(pooled)
            domain_corner = (blocks.origins * scale) @ pooled_strides  # (n,)
            base = pool_offset[key] + cells.plane * math.prod(pooled)  # (m_l,)
            inside = _cell_offsets(size, pooled)  # (p,)
            src = base[:, None, None] + domain_corner[domain][..., None] + inside[perm[row]]  # (m_l j p)
            source[out.reshape(-1)] = src.permute(0, 2, 1).reshape(-1, j)
            sign[rows] = signs[row]
        if i:
            ids_i = const_index[rows]
            if ids_i.numel() and (int(ids_i.min()) < 0 or int(ids_i.max()) >= constants):
                raise CollagekitError(f"sparse code: a constant-cell index at level {level} lies outside [0, {constants})")
            offset = sum(constants * math.prod(s) for s in const_sizes)
            const = offset + ids_i[..., None] * p + torch.arange(p)  # (m_l i p)
            constant[out.reshape(-1)] = const.permute(0, 2, 1).reshape(-1, i)
        const_sizes.append(size)
        first += count
    return SparsePlan(planes, padded, pools, source, sign, leaf, constant, const_sizes)


def plan_for(collage: GridCollage, params: SparseParams, spatial: tuple[int, ...], scale: int) -> SparsePlan:
    """The plan of ``params`` at ``scale`` on its device, built once per layout (cached on ``params``)."""
    device = params.bias.device
    key = (tuple(spatial), scale, str(device))
    plan = params._plans.get(key)
    if plan is None:
        plan = build_plan(collage, params, spatial, scale)
        # 32-bit indices where they fit: half the memory a decode holds, and a faster gather.
        small = max(plan.source.numel() and int(plan.source.max()), plan.leaf.numel(), plan.constant.numel() and int(plan.constant.max())) < 2**31
        index = dict(device=device, dtype=torch.int32 if small else torch.long)
        plan = SparsePlan(
            plan.planes, plan.padded, plan.pools, plan.source.to(**index), plan.sign.to(device), plan.leaf.to(**index),
            plan.constant.to(**index), plan.const_sizes,
        )
        params._plans[key] = plan
    return plan


def constant_cells(collage: GridCollage, sizes: list[tuple[int, ...]], like: Tensor) -> Tensor:
    """The constant cells at each of these sizes, flattened and concatenated (the plan's ``constant``
    indexes this)."""
    parts = []
    for size in sizes:
        # Constant cells ignore the pooled values; they only read their shape (and device).
        shape = like.new_zeros(1, 1, 1, *size)
        parts.append(torch.cat([aux(shape, 1) for aux in collage.constant], dim=2).reshape(-1))
    return torch.cat(parts) if parts else like.new_zeros(0)


def pad_to(z: Tensor, size: tuple[int, ...]) -> Tensor:
    """(b c *spatial) -> (b c *size), edge values repeated (no new values: non-expansive)."""
    pad: list[int] = []
    for have, want in reversed(list(zip(z.shape[2:], size))):
        pad += [0, want - have]
    return F.pad(z, pad, mode="replicate") if any(pad) else z


# ---------------------------------------------------------------- what an encoder compares
def level_candidates(collage: GridCollage, padded: Tensor, spatial: tuple[int, ...], level: int) -> Tensor:
    """(b c *padded) signal at scale 1 -> (p S r): every signal-dependent source of ``level`` for every
    plane, in source-id order, flattened (``r`` samples per cell): what a search compares ranges with."""
    part = collage.partitioner
    size = tree.level_sizes(part.range_size(1), part.levels)[level]
    blocks = part.domain_blocks(spatial, level)
    if not blocks.whole and not collage.pooler.block_local:
        raise CollagekitError(f"pooler {collage.pooler.config.name!r} cannot pool local domains of a sparse collage (it is not block-local)")
    window = padded[(slice(None), slice(None), *(slice(0, w) for w in blocks.window))]
    pooled = collage.pooler.pool_signal(window, blocks.pooled).flatten(0, 1).flatten(1)  # (p Q)
    n = blocks.origins.shape[0]
    perm, sign = _variant_table(collage, size, n)
    corners = blocks.origins @ _strides(blocks.pooled)  # (n,)
    inside = _cell_offsets(size, blocks.pooled)  # (r,)
    gather = (corners[None, :, None] + inside[perm][:, None, :]).to(pooled.device)  # (u n r)
    cells = pooled[:, gather.reshape(-1)].reshape(pooled.shape[0], *gather.shape) * sign[:, None, None].to(pooled)
    return cells.flatten(1, 2)  # (p (u n) r): id = row * n + d


def cell_blocks(padded: Tensor, cells: tree.Cells) -> Tensor:
    """(b c *padded) signal, cells of one level -> (m r): each cell's samples, row-major."""
    flat = padded.flatten(0, 1).flatten(1)  # (p N)
    size = tuple(padded.shape[2:])
    corner = cells.origin @ _strides(size)  # (m,)
    index = (corner[:, None] + _cell_offsets(cells.size, size)[None]).to(padded.device)
    return flat[cells.plane[:, None].to(padded.device), index]
