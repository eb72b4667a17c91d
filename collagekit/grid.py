"""Modality-generic grid components: regular tiling, average pooling, learned auxiliary patches.

They work for any number of spatial axes (1 to 3). Modality plugins register configured subclasses
(``tiles2d`` for images, segments for audio) rather than writing their own tiling.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from collagekit.config import AverageConfig, GridConfig, LearnedPatchesConfig, Size
from collagekit.errors import CollagekitError
from collagekit.interfaces import AuxiliaryDomain, DomainBlocks, Partitioner, Pooler
from collagekit.tree import grid_points, level_sizes


def _as_tuple(value: Size, ndim: int, what: str) -> tuple[int, ...]:
    out = (value,) * ndim if isinstance(value, int) else tuple(value)
    if len(out) != ndim or any(v < 1 for v in out):
        raise CollagekitError(f"{what} must be a positive int or {ndim} positive ints, got {value!r}")
    return out


class GridPartitioner(Partitioner):
    """Regular grid tiling for ``ndim`` spatial axes.

    Padding replicates edge values, so domains read only existing values and stay non-expansive; the
    padded border of the range tiling is cropped away by :meth:`merge`.
    """

    ndim: ClassVar[int]
    config: GridConfig

    def __init__(self, config: GridConfig | None = None, **fields) -> None:
        super().__init__(config, **fields)
        self._range = _as_tuple(self.config.range_size, self.ndim, "range_size")
        full = self.config.domain_size == "full"
        self._domain = None if full else _as_tuple(self.config.domain_size, self.ndim, "domain_size")
        stride = self.config.domain_stride
        self._stride = None if full else (self._domain if stride is None else _as_tuple(stride, self.ndim, "domain_stride"))
        # Every level's cells halve exactly, and with them the domain geometry (checked here, once).
        level_sizes(self._range, self.config.levels)
        if not full:
            level_sizes(self._domain, self.config.levels)
            level_sizes(self._stride, self.config.levels)

    @property
    def levels(self) -> int:
        return self.config.levels

    # ------------------------------------------------------------ geometry
    def padded(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """The spatial size after padding to whole range cells (scale 1)."""
        if len(spatial) != self.ndim:
            raise CollagekitError(f"{self.config.name} expects {self.ndim} spatial axes, got a signal of shape {tuple(spatial)}")
        return tuple(math.ceil(s / r) * r for s, r in zip(spatial, self._range))

    def _domain_geometry(self, spatial: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        padded = self.padded(spatial)
        if self._domain is None:
            return padded, padded
        if any(d > p for d, p in zip(self._domain, padded)):
            raise CollagekitError(
                f"signal of size {tuple(spatial)} is smaller than one domain cell {self._domain}; "
                "use a smaller domain_size or domain_size: full"
            )
        return self._domain, self._stride

    def num_ranges(self, spatial: tuple[int, ...]) -> int:
        return math.prod(p // r for p, r in zip(self.padded(spatial), self._range))

    def num_domains(self, spatial: tuple[int, ...]) -> int:
        size, stride = self._domain_geometry(spatial)
        return math.prod((p - d) // s + 1 for p, d, s in zip(self.padded(spatial), size, stride))

    def range_size(self, scale: int = 1) -> tuple[int, ...]:
        return tuple(r * scale for r in self._range)

    def range_grid(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(p // r for p, r in zip(self.padded(spatial), self._range))

    def domain_blocks(self, spatial: tuple[int, ...], level: int) -> DomainBlocks:
        padded = self.padded(spatial)
        size = tuple(r >> level for r in self._range)
        if self._domain is None:
            return DomainBlocks(window=padded, pooled=size, origins=torch.zeros(1, self.ndim, dtype=torch.long), whole=True)
        domain, stride = (tuple(d >> level for d in self._domain), tuple(s >> level for s in self._stride))
        if any(d % r or s % (d // r) for d, r, s in zip(domain, size, stride)):
            raise CollagekitError(
                f"sparse collages need domain_size a whole multiple f of range_size and domain_stride a multiple of f "
                f"(got range {size}, domain {domain}, stride {stride} at level {level})"
            )
        factor = tuple(d // r for d, r in zip(domain, size))
        self._domain_geometry(spatial)  # one domain must fit
        counts = [(p - d) // s + 1 for p, d, s in zip(padded, domain, stride)]
        origins = grid_points(counts, tuple(s // f for s, f in zip(stride, factor)))
        pooled = tuple(p // f for p, f in zip(padded, factor))
        return DomainBlocks(window=tuple(q * f for q, f in zip(pooled, factor)), pooled=pooled, origins=origins)

    # ------------------------------------------------------------ cells
    def _pad(self, z: Tensor, scale: int) -> Tensor:
        spatial = tuple(s // scale for s in z.shape[2:])
        target = tuple(p * scale for p in self.padded(spatial))
        pad: list[int] = []
        for have, want in reversed(list(zip(z.shape[2:], target))):
            pad += [0, want - have]
        if not any(pad):
            return z
        return F.pad(z, pad, mode="replicate")

    def _windows(self, z: Tensor, size: tuple[int, ...], stride: tuple[int, ...]) -> Tensor:
        """(b c *spatial) -> (b c n *size): all windows, row-major over window positions."""
        for axis, (s, st) in enumerate(zip(size, stride)):
            z = z.unfold(2 + axis, s, st)
        b, c = z.shape[:2]
        return z.reshape(b, c, -1, *size)

    def domains(self, z: Tensor, scale: int = 1) -> Tensor:
        z = self._pad(z, scale)
        spatial = tuple(s // scale for s in z.shape[2:])
        size, stride = self._domain_geometry(spatial)
        return self._windows(z, tuple(d * scale for d in size), tuple(s * scale for s in stride))

    def ranges(self, z: Tensor, scale: int = 1) -> Tensor:
        size = self.range_size(scale)
        return self._windows(self._pad(z, scale), size, size)

    def merge(self, cells: Tensor, spatial: tuple[int, ...], scale: int = 1) -> Tensor:
        size = self.range_size(scale)
        b, c = cells.shape[:2]
        grid = [p // r for p, r in zip(self.padded(tuple(s // scale for s in spatial)), self._range)]
        z = cells.reshape(b, c, *grid, *size)
        # (b c g1 .. gn r1 .. rn) -> (b c g1 r1 .. gn rn): interleave grid and cell axes, then flatten pairs.
        nd = self.ndim
        order = [0, 1] + [ax for i in range(nd) for ax in (2 + i, 2 + nd + i)]
        z = z.permute(order).reshape(b, c, *(g * r for g, r in zip(grid, size)))
        crop = (slice(None), slice(None), *(slice(0, s) for s in spatial))
        return z[crop]


class AveragePooler(Pooler):
    """Mean over each block of a domain cell (adaptive when sizes do not divide): non-expansive."""

    Config = AverageConfig

    block_local: ClassVar[bool] = True
    nested: ClassVar[bool] = True
    _pools = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
    _block_pools = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}

    def forward(self, domains: Tensor, size: tuple[int, ...]) -> Tensor:
        b, c, n, *d = domains.shape
        if tuple(d) == tuple(size):
            return domains
        pool = self._pools.get(len(size))
        if pool is None:
            raise CollagekitError(f"average pooling supports 1 to 3 spatial axes, got {len(size)}")
        return pool(domains.reshape(b * c * n, 1, *d), size).reshape(b, c, n, *size)

    def pool_signal(self, z: Tensor, size: tuple[int, ...]) -> Tensor:
        """Whole blocks average with a fixed kernel, faster than adaptive pooling (equal to rounding:
        the sum's order may differ)."""
        b, c, *d = z.shape
        if all(w % s == 0 for w, s in zip(d, size)) and len(size) in self._block_pools:
            kernel = tuple(w // s for w, s in zip(d, size))
            return self._block_pools[len(size)](z.reshape(b * c, 1, *d), kernel).reshape(b, c, *size)
        return super().pool_signal(z, size)


class LearnedPatches(AuxiliaryDomain):
    """``count`` constant range-size patches, learned (per image when fitting, per dataset in a codec).

    Shared across channels. Decoding at scale s resamples them to s x the range size (linear
    interpolation), the only part of the code that is not natively scale-free; smaller range cells of an
    adaptive partition see them averaged down to their size.
    """

    Config = LearnedPatchesConfig

    signal_dependent: ClassVar[bool] = False
    _modes = {1: "linear", 2: "bilinear", 3: "trilinear"}

    def bind(self, range_size: tuple[int, ...]) -> None:
        generator = torch.Generator().manual_seed(0)
        init = torch.randn(self.config.count, *range_size, generator=generator) * self.config.init_std
        self.patches = nn.Parameter(init)

    def count(self, num_domains: int) -> int:
        return self.config.count

    def forward(self, pooled: Tensor, scale: int = 1) -> Tensor:
        """(b c n *r) -> (b c v *r): the patches resampled to the cells' size ``*r`` (any level, any scale)."""
        patches = self.patches
        size = tuple(pooled.shape[3:])
        if size != tuple(patches.shape[1:]):
            # Shrinking averages (area); growing interpolates linearly, as decoding at scale s always has.
            mode = "area" if all(s <= p for s, p in zip(size, patches.shape[1:])) else self._modes[len(size)]
            corners = {} if mode == "area" else {"align_corners": False}
            patches = F.interpolate(patches[None], size=size, mode=mode, **corners)[0]
        b, c = pooled.shape[:2]
        return patches.expand(b, c, *patches.shape)
