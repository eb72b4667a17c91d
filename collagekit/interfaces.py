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
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

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
    """Cuts a grid signal into K equal-size range cells that tile it and N domain cells.

    Range cells never overlap and cover the (padded) signal; domain cells may overlap. Scaling a signal
    by an integer ``scale`` scales every cell by ``scale``, so K and N do not change: that is what lets
    one code decode at any resolution.
    """

    kind: ClassVar[str] = "partitioner"

    @abstractmethod
    def num_ranges(self, spatial: tuple[int, ...]) -> int:
        """K for a signal of this spatial size (at scale 1)."""

    @abstractmethod
    def num_domains(self, spatial: tuple[int, ...]) -> int:
        """N for a signal of this spatial size (at scale 1)."""

    @abstractmethod
    def range_size(self, scale: int = 1) -> tuple[int, ...]:
        """The size ``*r`` of every range cell at this scale."""

    @abstractmethod
    def domains(self, z: Tensor, scale: int = 1) -> Tensor:
        """(b c *spatial) -> (b c n *d). Must be non-expansive: every output value is an input value."""

    @abstractmethod
    def ranges(self, z: Tensor, scale: int = 1) -> Tensor:
        """(b c *spatial) -> (b c k *r): the range cells of a signal (for encoders and losses)."""

    @abstractmethod
    def merge(self, cells: Tensor, spatial: tuple[int, ...], scale: int = 1) -> Tensor:
        """(b c k *r) -> (b c *spatial): the inverse of :meth:`ranges` (padding cropped away)."""


class Pooler(Component, nn.Module):
    """Shrinks domain cells to range size: (b c n *d) -> (b c n *r).

    Must be non-expansive in the sup norm (each output a convex combination of inputs), which is what
    the operator's Lipschitz bound assumes.
    """

    kind: ClassVar[str] = "pooler"

    @abstractmethod
    def forward(self, domains: Tensor, size: tuple[int, ...]) -> Tensor: ...


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
        """(b c n *r) -> (b c v *r) at this scale."""


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
