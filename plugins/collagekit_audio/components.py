"""1D audio components: segment partitioning, the sign/time-reversal cells and plain time reversal."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from collagekit.errors import CollagekitError
from collagekit.grid import GridPartitioner
from collagekit.interfaces import AuxiliaryDomain
from collagekit_audio.config import ReverseConfig, SegmentsConfig, SignTimeConfig


class Segments(GridPartitioner):
    """Range segments of ``range_size`` samples and domain segments of ``domain_size`` samples over a
    waveform of any length (padded at the end by repeating the last sample)."""

    ndim: ClassVar[int] = 1

    Config = SegmentsConfig


class SignTime(AuxiliaryDomain):
    """The 1D analogue of the dihedral cells: every pooled domain negated, time-reversed, and both.

    The group {identity, negation, reversal, both} acts by isometries (a sign and a permutation of
    samples), so the cells are non-expansive and count towards the Lipschitz bound as signal-dependent
    sources. Negating a [0, 1]-coded waveform (x + 1) / 2 gives (-x + 1) / 2 - 1: the offset is the
    range's bias to absorb.
    """

    Config = SignTimeConfig

    signal_dependent: ClassVar[bool] = True

    def bind(self, range_size: tuple[int, ...]) -> None:
        if len(range_size) != 1:
            raise CollagekitError(f"sign-time cells act on 1D signals, got range size {range_size}")

    def count(self, num_domains: int) -> int:
        return 3 * num_domains

    def forward(self, pooled: Tensor, scale: int = 1) -> Tensor:
        """(b c n r) -> (b c (3 n) r), transform-major: negated, reversed, negated and reversed."""
        reversed_ = pooled.flip(-1)
        return torch.cat([-pooled, reversed_, -reversed_], dim=2)

    def variants(self, size: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """Negated, reversed, negated and reversed, as signed permutations of a segment's samples."""
        forward, backward = torch.arange(size[0]), torch.arange(size[0]).flip(0)
        return torch.stack([forward, backward, backward]), torch.tensor([-1.0, 1.0, -1.0])


class TimeReversal(AuxiliaryDomain):
    """Every pooled domain played backwards: one extra cell per domain.

    For a sparse collage, whose weights carry their own sign, this is all that ``sign-time`` adds (its
    negated cells are the same sources with the weight's sign flipped) at half the sources to search
    and a bit less per stored index.
    """

    Config = ReverseConfig

    signal_dependent: ClassVar[bool] = True

    def bind(self, range_size: tuple[int, ...]) -> None:
        if len(range_size) != 1:
            raise CollagekitError(f"reversed cells act on 1D signals, got range size {range_size}")

    def count(self, num_domains: int) -> int:
        return num_domains

    def forward(self, pooled: Tensor, scale: int = 1) -> Tensor:
        """(b c n r) -> (b c n r): each cell reversed in time."""
        return pooled.flip(-1)

    def variants(self, size: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        return torch.arange(size[0]).flip(0)[None], torch.ones(1)
