"""Shared pieces of the operator and solver tests: test partitioners, seeded parameters, one thread."""

from __future__ import annotations

from typing import ClassVar, Literal

import pytest
import torch

from collagekit.grid import GridConfig, GridPartitioner
from collagekit.operator import CollageParams, GridCollage

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add overhead (and thrash on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Segments(GridPartitioner):
    """1D grid partitioner for tests."""

    ndim: ClassVar[int] = 1

    class Config(GridConfig):
        name: Literal["test-segments"] = "test-segments"


class Tiles(GridPartitioner):
    """2D grid partitioner for tests."""

    ndim: ClassVar[int] = 2

    class Config(GridConfig):
        name: Literal["test-tiles"] = "test-tiles"


def random_params(collage: GridCollage, batch: int, channels: int, spatial: tuple[int, ...], seed: int,
                  magnitude: float = 1.0, scale_shift: float = 0.0) -> CollageParams:
    """Gaussian raw parameters times ``magnitude``; ``scale_shift`` pushes tanh(scale) towards 1."""
    g = torch.Generator().manual_seed(seed)
    shapes = collage.param_shapes(channels, spatial)
    rand = {k: magnitude * torch.randn(batch, *s, generator=g, dtype=F64) for k, s in shapes.items()}
    rand["scale"] = rand["scale"] + scale_shift
    return CollageParams.from_tensors(rand)
