"""The component interfaces every modality implements, and the config base they share.

Shapes use einops notation: ``b`` batch, ``c`` channels, ``*spatial`` the signal's spatial axes (one for
audio, two for images), ``n`` domain cells, ``k`` range cells, ``v`` auxiliary cells, ``*d`` a domain
cell's size, ``*r`` a range cell's size.

Every component is built from a pydantic ``Config`` (based on :class:`~collagekit.config.ComponentConfig`,
declared in a module that imports no torch) whose ``name`` literal is its registry key and its tag in
YAML recipes. Components are ``torch.nn.Module`` s so that the ones that learn (auxiliary
patches, encoders) carry parameters and move between devices like any other module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from collagekit.errors import CollagekitError
from collagekit.config import ComponentConfig

if TYPE_CHECKING:
    from collagekit.operator import CollageParams, GridCollage
    from collagekit.solver import Solver


class Component(ABC):
    """Mixin that ties a component class to its Config and its registry kind."""

    kind: ClassVar[str]
    Config: ClassVar[type[ComponentConfig]]

    def __init__(self, config: ComponentConfig | None = None, **fields: Any) -> None:
        super().__init__()
        if config is None:
            config = self.Config(**fields)
        elif fields:
            raise TypeError("pass either a config or keyword fields, not both")
        self.config = config


class Partitioner(Component, nn.Module):
    """Cuts a grid signal into range cells that tile it and N domain cells.

    Range cells never overlap and cover the (padded) signal; domain cells may overlap. Scaling a signal
    by an integer ``scale`` scales every cell by ``scale``, so K and N do not change: that is what lets
    one code decode at any resolution.

    The methods below describe a uniform grid of K equal cells, which is all a *dense* collage needs.
    A *sparse* collage (each range names a few sources) and an *adaptive* one (range cells of several
    sizes, the leaves of a tree over the top cells, :mod:`collagekit.tree`) also need :meth:`range_grid`
    and :meth:`domain_blocks`, and ``levels > 1`` for adaptive cells: the level-``l`` range size is the
    top size halved ``l`` times, and so is the domain geometry.
    """

    kind: ClassVar[str] = "partitioner"

    @property
    def levels(self) -> int:
        """Sizes a range cell may have: the top size halved 0 .. levels - 1 times (1: a uniform grid)."""
        return 1

    @abstractmethod
    def num_ranges(self, spatial: tuple[int, ...]) -> int:
        """K for a signal of this spatial size (at scale 1): the number of top cells."""

    @abstractmethod
    def num_domains(self, spatial: tuple[int, ...]) -> int:
        """N for a signal of this spatial size (at scale 1)."""

    @abstractmethod
    def range_size(self, scale: int = 1) -> tuple[int, ...]:
        """The size ``*r`` of every (top) range cell at this scale."""

    @abstractmethod
    def domains(self, z: Tensor, scale: int = 1) -> Tensor:
        """(b c *spatial) -> (b c n *d). Must be non-expansive: every output value is an input value."""

    @abstractmethod
    def ranges(self, z: Tensor, scale: int = 1) -> Tensor:
        """(b c *spatial) -> (b c k *r): the range cells of a signal (for encoders and losses)."""

    @abstractmethod
    def merge(self, cells: Tensor, spatial: tuple[int, ...], scale: int = 1) -> Tensor:
        """(b c k *r) -> (b c *spatial): the inverse of :meth:`ranges` (padding cropped away)."""

    # ---------------------------------------------------------------- sparse and adaptive collages
    def range_grid(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """Top cells per axis (their product is K), numbered row-major as :meth:`ranges` returns them;
        the padded signal is ``range_grid * range_size(1)``, padded by repeating edge values."""
        raise self._unsupported("range_grid")

    def domain_blocks(self, spatial: tuple[int, ...], level: int) -> DomainBlocks:
        """Level ``level``'s domains (the top level is 0) as blocks of one pooled signal, at scale 1 (see
        :class:`DomainBlocks`); their count is the level's N."""
        raise self._unsupported("domain_blocks")

    def _unsupported(self, method: str) -> CollagekitError:
        return CollagekitError(
            f"partitioner {self.config.name!r} supports dense collages only (it has no {method}()); "
            "use mixing: dense, or a partitioner such as tiles2d or segments1d"
        )


@dataclass(frozen=True)
class DomainBlocks:
    """Where a level's pooled domains lie, at scale 1, so that a sparse step can pool the signal once.

    ``pool(signal[:window])`` to size ``pooled`` (the operator's pooler, one cell spanning the window)
    holds every domain of the level pooled to range size: domain ``n`` is the block of the level's
    range size at ``origins[n]`` (n ndim), in the pooled signal's coordinates. At scale ``s`` every number is ``s`` times larger. It holds for
    a block-local pooler (:attr:`Pooler.block_local`) when every domain is a whole number ``f`` of range
    cells per axis and starts at a multiple of ``f``, and for any pooler when the one domain is the
    whole window.
    """

    window: tuple[int, ...]
    pooled: tuple[int, ...]
    origins: Tensor
    whole: bool = False  # the single domain is the whole window (any pooler then agrees)


class Pooler(Component, nn.Module):
    """Shrinks domain cells to range size: (b c n *d) -> (b c n *r).

    Must be non-expansive in the sup norm (each output a convex combination of inputs), which is what
    the operator's Lipschitz bound assumes.
    """

    kind: ClassVar[str] = "pooler"
    # Pooling a window made of whole f-blocks gives, block for block, what pooling each aligned block
    # alone gives (averaging does; a pooler that looks across blocks does not). Sparse collages with
    # local domains then pool the whole signal once per step instead of every domain.
    block_local: ClassVar[bool] = False
    # Pooling a pooled signal again by a whole factor equals pooling the signal once by the product
    # (averages of equal-size blocks' averages): a sparse step then pools each coarser level's signal
    # from the next finer pooled one, not from the whole signal again.
    nested: ClassVar[bool] = False

    @abstractmethod
    def forward(self, domains: Tensor, size: tuple[int, ...]) -> Tensor: ...

    def pool_signal(self, z: Tensor, size: tuple[int, ...]) -> Tensor:
        """(b c *window) -> (b c *size): the whole window pooled as one cell (what a sparse step reads
        its domains from). Override it where a faster route gives the same values."""
        return self(z[:, :, None], size)[:, :, 0]


class AuxiliaryDomain(Component, nn.Module):
    """Adds V extra range-size source cells.

    ``signal_dependent`` cells are non-expansive transforms of the pooled domains (dihedral variants)
    and count towards the Lipschitz bound; constant cells (learned patches) act like a bias and do not.
    """

    kind: ClassVar[str] = "auxiliary"
    signal_dependent: ClassVar[bool]

    def bind(self, range_size: tuple[int, ...]) -> None:
        """Called once by the operator with the range size at scale 1 (learned cells size themselves here)."""

    @abstractmethod
    def count(self, num_domains: int) -> int:
        """V, given N."""

    @abstractmethod
    def forward(self, pooled: Tensor, scale: int = 1) -> Tensor:
        """(b c n *r) -> (b c v *r) at this scale (constant cells: resampled to the cells' size ``*r``)."""

    def variants(self, size: tuple[int, ...]) -> tuple[Tensor, Tensor] | None:
        """Signal-dependent cells as signed permutations, which a sparse collage gathers directly:
        ``(perm (u p), sign (u,))`` with ``p = prod(size)``, such that cell ``t * n + d`` of
        :meth:`forward` is ``sign[t] * pooled[d].flatten()[perm[t]]`` (variant-major, ``u`` variants per
        domain). ``None``: not expressible so, and sparse mixing is refused with this cell."""
        return None


class Encoder(Component, nn.Module):
    """Finds collage parameters for data: a hypernetwork's forward pass, per-datum fitting, or a search."""

    kind: ClassVar[str] = "encoder"

    @abstractmethod
    def encode(self, x: Tensor, collage: GridCollage, solver: Solver) -> CollageParams:
        """(b c *spatial) -> parameters whose fixed point approximates ``x``."""


class LatentHead(Component, nn.Module):
    """A conditional diagonal Gaussian over ``p`` latent channels per cell: a generative model's prior or
    approximate posterior, e.g. a VAE's p(w | z) and q(w | x, z) over collage codes.

    (b f *grid) -> mean, sd, each (b p *grid), sd > 0. The model that owns the head knows ``f`` and
    ``p``, so it calls :meth:`bind` once, before training or loading weights (the head builds its layers
    there), the way the operator binds auxiliary cells to the range size.
    """

    kind: ClassVar[str] = "head"

    @abstractmethod
    def bind(self, features: int, latent: int) -> None:
        """Size the head: ``features`` input channels ``f``, ``latent`` output channels ``p``."""

    @abstractmethod
    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(b f *grid) -> mean (b p *grid), standard deviation (b p *grid)."""
