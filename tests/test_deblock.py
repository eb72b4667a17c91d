"""collagekit.deblock: the post-filter's strengths fitted by least squares, applied at any scale."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from collagekit import deblock

CELL, TILE = 4, 8
DISTANCE_0_OF_CELL_BORDERS = deblock.DISTANCES  # strengths: tile borders d = 0.., then cell borders d = 0..


def _blocky(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth 2D signal (1 1 32 48) and a copy with a random offset added to every 4 x 4 cell."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(48.0), indexing="ij")
    smooth = (torch.sin(y / 5) + torch.cos(x / 7))[None, None]
    offsets = torch.randn(1, 1, 8, 12, generator=g).repeat_interleave(CELL, 2).repeat_interleave(CELL, 3)
    return smooth, smooth + 0.2 * offsets


def test_fitted_strengths_bring_a_blocky_signal_closer_to_the_original() -> None:
    smooth, blocky = _blocky(0)
    strengths = deblock.fit(blocky, smooth, CELL, TILE)
    assert deblock.valid(strengths) and any(strengths)
    assert strengths[0] > 0 and strengths[DISTANCE_0_OF_CELL_BORDERS] > 0  # borders' samples move toward each other
    before = torch.mean((blocky - smooth) ** 2)
    after = torch.mean((deblock.apply(blocky, strengths, CELL, TILE) - smooth) ** 2)
    assert after < 0.8 * before



def test_no_strength_changes_nothing_and_one_axis_signals_work() -> None:
    _, blocky = _blocky(1)
    assert torch.equal(deblock.apply(blocky, [0] * deblock.STRENGTHS, CELL, TILE), blocky)
    wave = torch.arange(40.0).div(8).floor()[None, None]  # (1 1 40): a staircase, one step per cell of 8
    out = deblock.apply(wave, [0, 0, 0, 16, 0, 0], 8, 32)  # cell borders only, a quarter of the step each side
    assert out[0, 0, 7] == pytest.approx(0.25) and out[0, 0, 8] == pytest.approx(0.75)
    assert out[0, 0, 31] == pytest.approx(3.0) and out[0, 0, 6] == 0.0  # a tile border and an inner sample: unchanged


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.lists(st.integers(-deblock.LIMIT, deblock.LIMIT), min_size=6, max_size=6), st.integers(2, 3))
def test_at_scale_s_the_filter_acts_as_on_the_signal_at_scale_one(seed: int, strengths: list[int], scale: int) -> None:
    """Filtering the nearest-neighbour S x enlargement at scale S equals enlarging the filtered signal."""
    _, blocky = _blocky(seed)

    def up(z: torch.Tensor) -> torch.Tensor:
        return z.repeat_interleave(scale, 2).repeat_interleave(scale, 3)

    assert torch.allclose(deblock.apply(up(blocky), strengths, CELL, TILE, scale), up(deblock.apply(blocky, strengths, CELL, TILE)), atol=1e-5)


def test_header_values_are_checked() -> None:
    assert deblock.valid([1, -2, 3, 0, 0, 32])
    for bad in ([1, 2, 3], [0, 0, 0, 0, 0, 33], [0, 0, 0, 0, 0, 1.5], [True, 0, 0, 0, 0, 0], "0" * 6, None):
        assert not deblock.valid(bad)
