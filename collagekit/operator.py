"""The grid collage operator, shared by every grid modality (images, audio, VAE latents).

One step (paper eq. 3.1/3.2 with Def. 2), per channel and range cell ``k``::

    R_k = sum_n w[k, n] * pool(D_n)  +  sum_v w[k, N+v] * U_v  +  b[k]

This module is the *dense* collage: equal range cells, each weighing every source (K x S weights).
``mixing: sparse`` makes each range name a few sources instead, and allows range cells of several sizes
(a tree over the grid): :mod:`collagekit.sparse`. One operator runs both; the code's type says which.

The sources split into *signal-dependent* ones (pooled domains and non-expansive transforms of them,
e.g. dihedral variants) and *constant* ones (learned patches). Only the former move with ``z``, so the
step's sup-norm Lipschitz constant is at most ``max_k sum_dep |w[k, ·]|``. We enforce that bound by
construction with ``w_dep = rho * tanh(a) * softmax(g)``, the softmax taken over the sources of each
range (not over ranges, the reference code's bug), so the bound is ``< rho < 1`` for any number of
domains and auxiliary cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import Tensor, nn

from collagekit import sparse
from collagekit.errors import CollagekitError
from collagekit.interfaces import AuxiliaryDomain, Partitioner, Pooler
from collagekit.sparse import SparseParams

Mixing = Literal["dense", "sparse"]


@dataclass
class CollageParams:
    """Raw (unconstrained) collage parameters of a batch of signals.

    scale: (b c k s_dep)   a in w_dep = rho * tanh(a) * softmax(g)
    mix:   (b c k s_dep)   g, mixing logits over the signal-dependent sources of each range
    aux:   (b c k s_const) weights of the constant sources (learned patches), unconstrained
    bias:  (b c k)         one offset per range cell (only the sum matters, so one, not one per source)
    """

    scale: Tensor
    mix: Tensor
    aux: Tensor
    bias: Tensor

    def tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.tensors().values())

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> CollageParams:
        return cls(**{f.name: tensors[f.name] for f in fields(cls)})

    def map(self, fn: Callable[[Tensor], Tensor]) -> CollageParams:
        return CollageParams(*(fn(t) for t in self))


class GridCollage(nn.Module):
    """partition -> pool -> auxiliary cells -> per-range mixing -> bias -> merge.

    Works for any number of spatial axes the partitioner supports. The operator holds no per-signal
    state: the per-signal code is a :class:`CollageParams` (dense) or a
    :class:`~collagekit.sparse.SparseParams` (sparse: ``sources`` signal-dependent and ``constants``
    constant cells named per range, range cells of ``partitioner.levels`` sizes); learned auxiliary
    patches are module parameters shared by every signal decoded with this operator.
    """

    def __init__(
        self,
        partitioner: Partitioner,
        pooler: Pooler,
        auxiliaries: Sequence[AuxiliaryDomain] = (),
        contraction: float = 0.95,
        mixing: Mixing = "dense",
        sources: int = 1,
        constants: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 < contraction < 1.0:
            raise ValueError(f"contraction must lie in (0, 1), got {contraction}")
        if mixing == "dense" and partitioner.levels > 1:
            raise CollagekitError(
                f"range cells of {partitioner.levels} sizes need mixing: sparse (a dense range weighs every "
                "source of its level, and the levels have different numbers of sources)"
            )
        if mixing not in ("dense", "sparse") or sources < 0 or constants < 0:
            raise ValueError(f"bad mixing {mixing!r} with {sources} source(s) and {constants} constant(s)")
        self.partitioner = partitioner
        self.pooler = pooler
        self.contraction = contraction
        self.mixing = mixing
        self.sources = sources
        self.constants = constants
        for aux in auxiliaries:
            aux.bind(partitioner.range_size(1))
        self.dependent = nn.ModuleList([a for a in auxiliaries if a.signal_dependent])
        self.constant = nn.ModuleList([a for a in auxiliaries if not a.signal_dependent])

    @property
    def sparse(self) -> bool:
        return self.mixing == "sparse"

    # ---------------------------------------------------------------- shapes
    def num_sources(self, spatial: tuple[int, ...]) -> tuple[int, int]:
        """(s_dep, s_const) for a signal of this spatial size."""
        n = self.partitioner.num_domains(spatial)
        dep = n + sum(a.count(n) for a in self.dependent)
        const = sum(a.count(n) for a in self.constant)
        return dep, const

    def param_shapes(self, channels: int, spatial: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Shapes of one signal's :class:`CollageParams` (without the batch axis)."""
        k = self.partitioner.num_ranges(spatial)
        dep, const = self.num_sources(spatial)
        return {
            "scale": (channels, k, dep),
            "mix": (channels, k, dep),
            "aux": (channels, k, const),
            "bias": (channels, k),
        }

    def init_params(self, x: Tensor) -> CollageParams | SparseParams:
        """Parameters whose fixed point is ``x``'s range-cell means: every weight zero, bias = mean.

        x: (b c *spatial). A neutral start for fitting: the first decode is a blocky mean image. A sparse
        code starts with every top cell a leaf, naming the first sources (a search picks better ones:
        :mod:`collagekit.search`).
        """
        b, c, *spatial = x.shape
        if self.sparse:
            return self._init_sparse(x)
        shapes = self.param_shapes(c, tuple(spatial))
        bias = self.partitioner.ranges(x).flatten(3).mean(-1)
        return CollageParams(
            scale=x.new_zeros(b, *shapes["scale"]),
            mix=x.new_zeros(b, *shapes["mix"]),
            aux=x.new_zeros(b, *shapes["aux"]),
            bias=bias,
        )

    def _init_sparse(self, x: Tensor) -> SparseParams:
        from collagekit import tree

        b, c, *spatial = x.shape
        grid, levels = self.partitioner.range_grid(tuple(spatial)), self.partitioner.levels
        bias = self.partitioner.ranges(x).flatten(3).mean(-1).reshape(-1)  # (b c k) -> (m,)
        m = bias.shape[0]
        s_dep = sparse.level_sources(self, tuple(spatial), 0) if self.sources else 0
        s_const = sum(a.count(1) for a in self.constant)
        if self.sources > s_dep or self.constants > s_const:
            raise CollagekitError(
                f"a sparse range names {self.sources} source(s) and {self.constants} constant cell(s), "
                f"but the top level has {s_dep} and {s_const}"
            )
        return SparseParams(
            split=tuple(t.to(x.device) for t in tree.uniform(b * c, grid, levels)),
            index=torch.arange(self.sources, device=x.device).expand(m, -1).clone(),
            weight=x.new_zeros(m, self.sources),
            const_index=torch.arange(self.constants, device=x.device).expand(m, -1).clone(),
            aux=x.new_zeros(m, self.constants),
            bias=bias,
        )

    # ---------------------------------------------------------------- weights
    def dependent_weights(self, params: CollageParams | SparseParams) -> Tensor:
        """Effective weights of the signal-dependent sources, sum of |w| < contraction per range:
        (b c k s_dep) for a dense code, (m j) for a sparse one."""
        if isinstance(params, SparseParams):
            return sparse.effective_weights(params.weight, self.contraction)
        return self.contraction * torch.tanh(params.scale) * torch.softmax(params.mix, dim=-1)

    def lipschitz_bound(self, params: CollageParams | SparseParams) -> Tensor:
        """An upper bound on the sup-norm Lipschitz constant of the collage step: (b,) for a dense code,
        one value (over every plane) for a sparse one."""
        weights = self.dependent_weights(params).abs().sum(-1)
        if isinstance(params, SparseParams):
            return weights.amax() if weights.numel() else weights.new_zeros(())
        return weights.flatten(1).amax(-1)

    # ---------------------------------------------------------------- the step
    def _pooled(self, z: Tensor, scale: int) -> Tensor:
        """(b c *spatial) -> (b c s_dep *r): pooled domains and their signal-dependent variants."""
        pooled = self.pooler(self.partitioner.domains(z, scale), self.partitioner.range_size(scale))
        return torch.cat([pooled, *(aux(pooled, scale) for aux in self.dependent)], dim=2)

    def _offset(self, params: CollageParams, spatial: tuple[int, ...], scale: int) -> Tensor:
        """(b c k *r): the part of the step that does not depend on z (constant sources + bias)."""
        size = self.partitioner.range_size(scale)
        offset = params.bias.reshape(*params.bias.shape, *([1] * len(size)))
        if len(self.constant):
            # Constant cells ignore the pooled values; they only read its shape (n) and device.
            pooled = params.bias.new_zeros(1, 1, self.partitioner.num_domains(spatial), *size)
            cells = torch.cat([aux(pooled, scale) for aux in self.constant], dim=2)
            cells = cells.expand(params.aux.shape[0], params.aux.shape[1], *cells.shape[2:])
            offset = offset + torch.einsum("bcs...,bcks->bck...", cells, params.aux)
        return offset

    def step_fn(self, params: CollageParams | SparseParams, spatial: tuple[int, ...], scale: int = 1) -> Callable[[Tensor], Tensor]:
        """The collage map ``z -> F(z)`` for these parameters, with its constant part computed once.

        ``spatial`` is the signal's size at scale 1; the map acts on (b c *(spatial * scale)).
        """
        if isinstance(params, SparseParams) != self.sparse:
            raise CollagekitError(f"a {type(params).__name__} code does not fit a {self.mixing} collage")
        if isinstance(params, SparseParams):
            return self._sparse_step(params, spatial, scale)
        big = tuple(s * scale for s in spatial)
        offset = self._offset(params, spatial, scale)
        weights = self.dependent_weights(params)

        def step(z: Tensor) -> Tensor:
            cells = torch.einsum("bcs...,bcks->bck...", self._pooled(z, scale), weights) + offset
            return self.partitioner.merge(cells, big, scale)

        return step

    def _sparse_parts(self, params: SparseParams, spatial: tuple[int, ...], scale: int) -> tuple[sparse.SparsePlan, Tensor, Tensor]:
        """-> (plan, per-sample weights (N j), per-sample offset (N,)): the parts of a sparse step that do
        not depend on z, computed once per map (with gradients to the code and the learned cells)."""
        plan = sparse.plan_for(self, params, spatial, scale)
        weights = (self.dependent_weights(params) * plan.sign).index_select(0, plan.leaf)
        offset = params.bias.index_select(0, plan.leaf)
        if params.aux.shape[-1]:
            cells = sparse.constant_cells(self, plan.const_sizes, params.bias)
            constant = cells.index_select(0, plan.constant.reshape(-1)).view(plan.constant.shape)
            offset = offset + (params.aux.index_select(0, plan.leaf) * constant).sum(-1)
        return plan, weights, offset

    def _sparse_step(self, params: SparseParams, spatial: tuple[int, ...], scale: int,
                     parts: tuple[sparse.SparsePlan, Tensor, Tensor] | None = None) -> Callable[[Tensor], Tensor]:
        plan, weights, offset = parts or self._sparse_parts(params, spatial, scale)
        crop = (slice(None), slice(None), *(slice(0, s * scale) for s in spatial))
        single = weights.shape[-1] == 1
        source = plan.source.reshape(-1)

        def step(z: Tensor) -> Tensor:
            b, c = z.shape[:2]
            if b * c != plan.planes:
                raise CollagekitError(f"this sparse code holds {plan.planes} planes, the signal has {b * c}")
            out = offset
            if weights.shape[-1]:
                padded = sparse.pad_to(z, plan.padded)
                pools = self._pool_levels(padded, plan.pools)
                pooled = pools[0] if len(pools) == 1 else torch.cat(pools)
                gathered = pooled.index_select(0, source).view(weights.shape)  # faster than pooled[source]
                if torch.is_grad_enabled() and (weights.requires_grad or offset.requires_grad or pooled.requires_grad):
                    out = torch.addcmul(offset, weights[:, 0], gathered[:, 0]) if single else offset + (weights * gathered).sum(-1)
                elif single:  # decoding: one fused pass in place, no temporaries beyond the gather
                    out = torch.addcmul(offset, weights[:, 0], gathered[:, 0], out=gathered[:, 0])
                else:
                    out = gathered.mul_(weights).sum(-1).add_(offset)
            return out.view(b, c, *plan.padded)[crop]

        return step

    def _pool_levels(self, padded: Tensor, pools: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> list[Tensor]:
        """Each level geometry's pooled signal, flattened, in the plan's order. With a nested pooler a
        signal pooled from the same window as a finer one is pooled from that finer one (the whole-image
        domains of an adaptive collage: one pass over the signal instead of one per level)."""
        done: dict[tuple[int, ...], tuple[tuple[int, ...], Tensor]] = {}  # window -> (finest size so far, its pooled signal)
        out = []
        for window, size in sorted(pools, key=lambda p: -math.prod(p[1])):
            finer = done.get(window)
            if self.pooler.nested and finer is not None and all(f % s == 0 for f, s in zip(finer[0], size)):
                pooled = self.pooler.pool_signal(finer[1], size)
            else:
                pooled = self.pooler.pool_signal(padded[(slice(None), slice(None), *(slice(0, w) for w in window))], size)
            done[window] = (size, pooled)
            out.append(((window, size), pooled))
        order = {key: pooled.reshape(-1) for key, pooled in out}
        return [order[key] for key in pools]

    def step_and_start(self, params: CollageParams | SparseParams, channels: int, spatial: tuple[int, ...],
                       scale: int = 1) -> tuple[Callable[[Tensor], Tensor], Tensor]:
        """The collage map (as :meth:`step_fn`) and where a decode starts (b c *(spatial * scale)), sharing
        their work. Dense: zeros (any start reaches the fixed point). Sparse: ``offset / (1 - sum w)``
        per sample, exact wherever a range's sources are flat at the range's own value (PIFS's start),
        so smooth areas need few iterations."""
        big = tuple(s * scale for s in spatial)
        if isinstance(params, CollageParams):
            return self.step_fn(params, spatial, scale), params.bias.new_zeros(params.bias.shape[0], channels, *big)
        parts = self._sparse_parts(params, spatial, scale)
        plan, weights, offset = parts
        z = (offset / (1.0 - weights.sum(-1))).detach()
        crop = (slice(None), slice(None), *(slice(0, s) for s in big))
        return self._sparse_step(params, spatial, scale, parts), z.view(plan.planes // channels, channels, *plan.padded)[crop]

    def initial_state(self, params: CollageParams | SparseParams, channels: int, spatial: tuple[int, ...], scale: int = 1) -> Tensor:
        """Where a decode starts (see :meth:`step_and_start`)."""
        return self.step_and_start(params, channels, spatial, scale)[1]

    def forward(self, z: Tensor, params: CollageParams, scale: int = 1) -> Tensor:
        """One collage step: (b c *spatial') -> (b c *spatial'), spatial' = spatial * scale."""
        spatial = tuple(s // scale for s in z.shape[2:])
        return self.step_fn(params, spatial, scale)(z)
