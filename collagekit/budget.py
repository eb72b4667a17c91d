"""A memory budget, checked before anything large is allocated.

Every decode, fit, scale-up and render first estimates its peak working memory from the file's header
and the options alone (never by trying), and :func:`check` refuses it with one line above the limit:
a 1 KB file must not be able to ask for 10 GB. The limit is ``COLLAGEKIT_MAX_MEMORY`` (``8G``,
``512M``, ``12GiB``, plain bytes), by default 4 GiB or three quarters of the machine's memory,
whichever is less: a laptop's share. The estimates are upper bounds of peak resident memory above
what the process already holds (its imports, the file read); ``tests/budget_measure.py`` compares
them with the peak RSS measured in child processes and ``docs/results/budget.md`` lists the figures.

The grid collage estimate comes from the components' public sizes (number of range and domain cells,
range cell size, number of sources) and the solver's settings, so it serves every codec built on
:class:`~collagekit.operator.GridCollage`: the ``grid-collage`` code of fractalization and the learned
codecs (whose cells are tiles or segments, solved as one batch). Plugins with other decoders compute
their own per-element costs and call :func:`check`.

Shapes: ``b`` signals solved together (channels, tiles, segments: each its own collage signal),
``k`` range cells, ``n`` domain cells, ``*r`` a range cell's size, ``*d`` a domain cell's size.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from collagekit.errors import CollagekitError

if TYPE_CHECKING:
    from collagekit.config import CollageConfig
    from collagekit.interfaces import AuxiliaryDomain, Partitioner
    from collagekit.operator import GridCollage
    from collagekit.registry import Registry

ENV_LIMIT = "COLLAGEKIT_MAX_MEMORY"
DEFAULT_LIMIT = 4 << 30
FLOAT = 4  # bytes of a float32 value: every working tensor of a decode is float32
# Copies of the padded signal one collage step holds besides the solver's iterates: the padded input,
# the mixed range cells, the constant part (learned patches and biases) and the merged output.
STEP_COPIES = 4
# Float32-sized copies of the decoded output that writing it takes (float64 scaling and rounding to 8 bits).
SAVE_COPIES = 6
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


# ---------------------------------------------------------------- the limit
def parse_size(text: str) -> int:
    """``"8G"``, ``"512 MiB"``, ``"1.5g"``, ``"4294967296"`` -> bytes (binary units)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if match is None:
        raise CollagekitError(f"{ENV_LIMIT}={text!r} is not a size; write it like 8G, 512M or 12GiB")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(value) or value < 1:
        raise CollagekitError(f"{ENV_LIMIT}={text!r} must be a positive size, like 8G")
    return int(value)


def format_size(size: float) -> str:
    """Bytes -> ``"9.2 GiB"`` (binary units, 2 significant digits above 10)."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            value = size / factor
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{int(size)} bytes"


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def limit() -> int:
    """The working-memory limit in bytes: ``COLLAGEKIT_MAX_MEMORY``, else 4 GiB or 3/4 of the RAM, the smaller."""
    text = os.environ.get(ENV_LIMIT, "").strip()
    if text:
        return parse_size(text)
    physical = _physical_memory()
    return min(DEFAULT_LIMIT, physical * 3 // 4) if physical else DEFAULT_LIMIT


def check(need: int, what: str, remedy: str) -> None:
    """Refuse ``what`` (e.g. "decoding at scale 64") when its estimate ``need`` (bytes) is above the
    limit, with one line naming the estimate, the limit, ``remedy`` and how to raise the limit."""
    cap = limit()
    if need > cap:
        raise CollagekitError(
            f"{what} needs about {format_size(need)} of memory, above the limit of {format_size(cap)}; "
            f"{remedy}, or raise the limit with {ENV_LIMIT} (e.g. {ENV_LIMIT}={math.ceil(need / (1 << 30))}G)"
        )


# ---------------------------------------------------------------- grid collages
@dataclass(frozen=True)
class CollageGeometry:
    """The sizes of one grid collage signal at scale 1 that its working memory follows."""

    ndim: int  # spatial axes
    ranges: int  # k
    cell: int  # values in one range cell, prod(*r)
    domains: int  # n
    domain_cell: int  # values in one domain cell before pooling, prod(*d) (an upper bound where unknown)
    dependent: int  # signal-dependent sources per range (pooled domains and their variants)
    constant: int  # constant sources per range (learned patches)
    # Sparse collages (collagekit.sparse): sources and constant cells named per range, and what a search
    # compares: the most source values of any level, per plane (its S_l sources x its cell size).
    named: tuple[int, int] | None = None
    candidates: int = 0
    tree_cells: int = 0  # cells of the full tree, per plane

    @classmethod
    def of_collage(cls, collage: GridCollage, spatial: tuple[int, ...]) -> CollageGeometry:
        """The geometry of a built operator over a signal of this spatial size."""
        dependent, constant = collage.num_sources(spatial)
        named = (collage.sources, collage.constants) if collage.sparse else None
        return cls._of(collage.partitioner, spatial, dependent, constant, named, [*collage.dependent])

    @classmethod
    def of_config(cls, config: CollageConfig, registry: Registry, spatial: tuple[int, ...]) -> CollageGeometry:
        """The geometry of an operator described by a config, *without* building it: building binds the
        auxiliary cells, and learned ones allocate their patches then (a hostile header's range size
        would make that the allocation to refuse). Sums the sources as ``GridCollage.num_sources`` does."""
        partitioner = registry.build("partitioner", config.partitioner)
        auxiliaries: Sequence[AuxiliaryDomain] = [registry.build("auxiliary", aux) for aux in config.auxiliary]
        n = partitioner.num_domains(spatial)
        dependent = n + sum(a.count(n) for a in auxiliaries if a.signal_dependent)
        constant = sum(a.count(n) for a in auxiliaries if not a.signal_dependent)
        named = (config.sources, config.constants) if config.mixing == "sparse" else None
        return cls._of(partitioner, spatial, dependent, constant, named, [a for a in auxiliaries if a.signal_dependent])

    @classmethod
    def _of(
        cls, partitioner: Partitioner, spatial: tuple[int, ...], dependent: int, constant: int,
        named: tuple[int, int] | None = None, variants: Sequence[AuxiliaryDomain] = (),
    ) -> CollageGeometry:  # fmt: skip
        ranges = partitioner.num_ranges(spatial)
        cell = math.prod(partitioner.range_size(1))
        domains = partitioner.num_domains(spatial)
        geometry = cls(len(spatial), ranges, cell, domains, _domain_cell(partitioner, spatial, ranges * cell), dependent, constant)
        if named is None:
            return geometry
        # Sparse: every level's sources (domains x (1 + variants)) and cells, from the sizes alone.
        per_domain = 1 + sum(a.count(1) for a in variants)
        children = 2 ** len(spatial)
        levels = partitioner.levels
        candidates = max(_level_domains(partitioner, spatial, level) * per_domain * (cell // children**level) for level in range(levels))
        tree = ranges * sum(children**level for level in range(levels))
        return cls(*(getattr(geometry, f) for f in ("ndim", "ranges", "cell", "domains", "domain_cell", "dependent", "constant")),
                   named=named, candidates=candidates, tree_cells=tree)  # fmt: skip

    def padded(self, scale: int = 1) -> int:
        """Values of one padded signal (one channel) at this scale."""
        return self.ranges * self.cell * scale**self.ndim

    def params(self) -> int:
        """Values of one signal's raw parameters (scale, mix, aux, bias)."""
        return self.ranges * (2 * self.dependent + self.constant + 1)


def _level_domains(partitioner: Partitioner, spatial: tuple[int, ...], level: int) -> int:
    """N at ``level`` without listing the domains (a hostile geometry may have billions): the core's grid
    partitioners from their sizes, any other from its own ``domain_blocks``."""
    from collagekit.grid import GridPartitioner

    if isinstance(partitioner, GridPartitioner):
        if partitioner._domain is None:  # noqa: SLF001 - the core's own partitioner
            return 1
        padded = partitioner.padded(spatial)
        sizes = (partitioner._domain, partitioner._stride)  # noqa: SLF001
        return math.prod((p - (d >> level)) // max(1, s >> level) + 1 for p, d, s in zip(padded, *sizes))
    return int(partitioner.domain_blocks(spatial, level).origins.shape[0])


def _domain_cell(partitioner: Partitioner, spatial: tuple[int, ...], padded: int) -> int:
    """Values of one domain cell at scale 1. The core's grid partitioners know it (a domain size, or the
    whole padded signal); for any other, a domain cell is taken to be as large as the padded signal."""
    from collagekit.grid import GridPartitioner

    if isinstance(partitioner, GridPartitioner):
        size, _ = partitioner._domain_geometry(spatial)  # noqa: SLF001 - the core's own partitioner
        return math.prod(size)
    return padded


def solver_copies(solver: Mapping[str, Any]) -> int:
    """Padded-signal-sized float32 buffers a solve holds at its peak: Picard the iterate, its image and
    the residual's temporaries; Anderson also ``memory`` past iterates and images, stacked, and their
    differences in float64 (7 per remembered step)."""
    if solver.get("method", solver.get("name")) == "picard":
        return 4
    memory = int(solver.get("memory", 5))
    return 7 * memory + 2


def collage_decode_bytes(geometry: CollageGeometry, batch: int, scale: int, solver: Mapping[str, Any], output: int | None = None) -> int:
    """Peak working memory of solving ``batch`` collage signals at ``scale`` (no gradients) and writing
    the result; ``output``: values written (default: the padded signals). A sparse collage holds, per
    sample, its gather plan (int64 while built: a source index per named source, its leaf, its
    constant cells) and its weights and offset; a step pools at most one signal and gathers once."""
    s = scale**geometry.ndim
    signal = batch * geometry.padded(scale)
    if geometry.named is not None:
        j, i = geometry.named
        per_sample = solver_copies(solver) + STEP_COPIES + 2 * (2 * j + 2 + 2 * i) + j + 1 + j
        return FLOAT * (signal * per_sample + SAVE_COPIES * (signal if output is None else output))
    sources = batch * (geometry.dependent + geometry.constant) * geometry.cell * s
    windows = batch * geometry.domains * geometry.domain_cell * s
    weights = batch * geometry.ranges * geometry.dependent * 3  # tanh, softmax and their product
    values = (
        signal * (STEP_COPIES + solver_copies(solver))
        + 2 * sources  # the pooled cells, and the concatenation that stacks them with their variants
        + windows
        + batch * geometry.params()
        + weights
        + SAVE_COPIES * (signal if output is None else output)
    )
    return FLOAT * values


def collage_fit_bytes(geometry: CollageGeometry, batch: int, solver: Mapping[str, Any]) -> int:
    """Peak working memory of fitting ``batch`` signals' parameters by gradient descent through the
    fixed point (implicit gradients): one solve's buffers at a time (the forward solve's, then the
    adjoint solve's), two one-step graphs kept for backward and one step running, and the parameters
    with their gradients and Adam's two moments."""
    signal = batch * geometry.padded()
    if geometry.named is not None:
        # The search: a level's sources (a centred copy, and one sorted by the shortlist's classes) and
        # one chunk of cross products at a time (collagekit.search.CHUNK pairs, two buffers), every tree
        # cell's code; then refinement, which holds the decode's plan with gradients: twice the decode's
        # per-sample buffers.
        j, i = geometry.named
        # (Every cell keeps j + 1 candidate codes: with j, j - 1, ..., 1 sources and none.)
        search = 3 * batch * geometry.candidates + 2 * (1 << 20) + batch * geometry.tree_cells * (j + 1) * (3 * j + 3)
        return FLOAT * search + 2 * collage_decode_bytes(geometry, batch, 1, solver)
    step = signal * STEP_COPIES + 2 * batch * (geometry.dependent + geometry.constant) * geometry.cell
    step += batch * geometry.domains * geometry.domain_cell
    weights = batch * geometry.ranges * geometry.dependent * 3
    values = (
        signal * solver_copies(solver)
        + 3 * (step + weights)  # two graphs kept for backward, and one step running
        + 4 * batch * geometry.params()  # parameters, gradients, Adam's moments
        + SAVE_COPIES * signal
    )
    return FLOAT * values
