"""The grid collage operator, shared by every grid modality (images, audio, VAE latents).

One step (paper eq. 3.1/3.2 with Def. 2), per channel and range cell ``k``::

    R_k = sum_n w[k, n] * pool(D_n)  +  sum_v w[k, N+v] * U_v  +  b[k]

The sources split into *signal-dependent* ones (pooled domains and non-expansive transforms of them,
e.g. dihedral variants) and *constant* ones (learned patches). Only the former move with ``z``, so the
step's sup-norm Lipschitz constant is at most ``max_k sum_dep |w[k, ·]|``. We enforce that bound by
construction with ``w_dep = rho * tanh(a) * softmax(g)``, the softmax taken over the sources of each
range (not over ranges, the reference code's bug), so the bound is ``< rho < 1`` for any number of
domains and auxiliary cells.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from collagekit.interfaces import AuxiliaryDomain, Partitioner, Pooler


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
    state: the per-signal code is a :class:`CollageParams`; learned auxiliary patches are module
    parameters shared by every signal decoded with this operator.
    """

    def __init__(
        self,
        partitioner: Partitioner,
        pooler: Pooler,
        auxiliaries: Sequence[AuxiliaryDomain] = (),
        contraction: float = 0.95,
    ) -> None:
        super().__init__()
        if not 0.0 < contraction < 1.0:
            raise ValueError(f"contraction must lie in (0, 1), got {contraction}")
        self.partitioner = partitioner
        self.pooler = pooler
        self.contraction = contraction
        for aux in auxiliaries:
            aux.bind(partitioner.range_size(1))
        self.dependent = nn.ModuleList([a for a in auxiliaries if a.signal_dependent])
        self.constant = nn.ModuleList([a for a in auxiliaries if not a.signal_dependent])

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

    def init_params(self, x: Tensor) -> CollageParams:
        """Parameters whose fixed point is ``x``'s range-cell means: every weight zero, bias = mean.

        x: (b c *spatial). A neutral start for fitting: the first decode is a blocky mean image.
        """
        b, c, *spatial = x.shape
        shapes = self.param_shapes(c, tuple(spatial))
        bias = self.partitioner.ranges(x).flatten(3).mean(-1)
        return CollageParams(
            scale=x.new_zeros(b, *shapes["scale"]),
            mix=x.new_zeros(b, *shapes["mix"]),
            aux=x.new_zeros(b, *shapes["aux"]),
            bias=bias,
        )

    # ---------------------------------------------------------------- weights
    def dependent_weights(self, params: CollageParams) -> Tensor:
        """(b c k s_dep): effective weights of the signal-dependent sources, sum of |w| < contraction."""
        return self.contraction * torch.tanh(params.scale) * torch.softmax(params.mix, dim=-1)

    def lipschitz_bound(self, params: CollageParams) -> Tensor:
        """(b,): an upper bound on the sup-norm Lipschitz constant of each signal's collage step."""
        return self.dependent_weights(params).abs().sum(-1).flatten(1).amax(-1)

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

    def step_fn(self, params: CollageParams, spatial: tuple[int, ...], scale: int = 1) -> Callable[[Tensor], Tensor]:
        """The collage map ``z -> F(z)`` for these parameters, with its constant part computed once.

        ``spatial`` is the signal's size at scale 1; the map acts on (b c *(spatial * scale)).
        """
        big = tuple(s * scale for s in spatial)
        offset = self._offset(params, spatial, scale)
        weights = self.dependent_weights(params)

        def step(z: Tensor) -> Tensor:
            cells = torch.einsum("bcs...,bcks->bck...", self._pooled(z, scale), weights) + offset
            return self.partitioner.merge(cells, big, scale)

        return step

    def forward(self, z: Tensor, params: CollageParams, scale: int = 1) -> Tensor:
        """One collage step: (b c *spatial') -> (b c *spatial'), spatial' = spatial * scale."""
        spatial = tuple(s // scale for s in z.shape[2:])
        return self.step_fn(params, spatial, scale)(z)
