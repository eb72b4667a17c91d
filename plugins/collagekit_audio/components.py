"""1D audio components: segment partitioning and the sign/time-reversal cells."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from collagekit.errors import CollagekitError
from collagekit.grid import GridPartitioner
from collagekit.interfaces import AuxiliaryDomain
from collagekit_audio.config import SegmentsConfig, SignTimeConfig


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
