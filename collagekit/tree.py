"""Range cells of several sizes: the leaves of a tree over a grid of top cells (a quadtree for images, a
binary tree for audio).

A partition with ``L`` levels has top cells of size ``r`` (level 0) that tile the padded signal in
row-major order; a cell at level ``l < L - 1`` may split into ``2^ndim`` children of half its size (every
axis halved), row-major within the parent. Every *plane* — one channel of one signal, ``(b c)``
flattened — has its own tree.

The split decisions are the layout, and part of the code: one flag per existing cell at levels
``0 .. L-2``, breadth first. Level 0 lists every plane's top cells (plane-major, row-major within a plane);
level ``l + 1`` lists the children of level ``l``'s split cells, in their parents' order. Leaves are the
cells that do not split (every cell of the last level is one); they are numbered level by level, in the
same order, which is the order of a sparse code's per-range tensors.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from collagekit.errors import CollagekitError


@dataclass(frozen=True)
class Cells:
    """The cells of one level: ``plane`` (m,) int64, ``origin`` (m ndim) int64 top-left corners in samples
    at scale 1, ``size`` the level's cell size."""

    plane: Tensor
    origin: Tensor
    size: tuple[int, ...]

    def __len__(self) -> int:
        return int(self.plane.numel())

    def select(self, mask: Tensor) -> Cells:
        return Cells(self.plane[mask], self.origin[mask], self.size)


def grid_points(counts: tuple[int, ...], step: tuple[int, ...]) -> Tensor:
    """(prod(counts) ndim) int64: the points ``i * step`` of a ``counts`` grid, row-major."""
    index = torch.arange(math.prod(counts))
    coords = []
    for axis in reversed(range(len(counts))):
        coords.append(index % counts[axis] * step[axis])
        index = index // counts[axis]
    return torch.stack(coords[::-1], 1)


def top_cells(planes: int, grid: tuple[int, ...], size: tuple[int, ...]) -> Cells:
    """Every plane's top cells, plane-major and row-major within a plane."""
    corners = grid_points(grid, size)
    count = corners.shape[0]
    return Cells(torch.arange(planes).repeat_interleave(count), corners.repeat(planes, 1), size)


def children(cells: Cells) -> Cells:
    """Cells of size ``r`` -> their ``2^ndim`` children of size ``r / 2`` each, per parent row-major."""
    half = tuple(s // 2 for s in cells.size)
    offsets = torch.tensor(list(itertools.product(*((0, h) for h in half))), dtype=torch.long)  # (2^nd nd)
    k = offsets.shape[0]
    origin = (cells.origin[:, None, :] + offsets[None]).reshape(-1, len(half))
    return Cells(cells.plane.repeat_interleave(k), origin, half)


def level_sizes(top: tuple[int, ...], levels: int) -> list[tuple[int, ...]]:
    """Cell size at every level: the top size halved ``l`` times (it must halve exactly)."""
    if any(s % 2 ** (levels - 1) for s in top):
        raise CollagekitError(f"range size {top} cannot be halved {levels - 1} time(s): use fewer levels or a size divisible by {2 ** (levels - 1)}")
    return [tuple(s >> level for s in top) for level in range(levels)]


def leaves(split: tuple[Tensor, ...], planes: int, grid: tuple[int, ...], top: tuple[int, ...], levels: int) -> list[Cells]:
    """The leaves of every level, from the split flags; checks that the flags fit the tree.

    ``split[l]`` is (nodes_l,) bool for ``l < levels - 1``; a uniform partition (one level) has none.
    """
    if len(split) != levels - 1:
        raise CollagekitError(f"a {levels}-level partition needs {levels - 1} split-flag vectors, got {len(split)}")
    sizes = level_sizes(top, levels)
    nodes = top_cells(planes, grid, sizes[0])
    result = []
    for level, flags in enumerate(split):
        if flags.dtype != torch.bool or flags.shape != (len(nodes),):
            raise CollagekitError(f"level {level} has {len(nodes)} cells but {tuple(flags.shape)} split flags")
        result.append(nodes.select(~flags))
        nodes = children(nodes.select(flags))
    result.append(nodes)
    return result


def uniform(planes: int, grid: tuple[int, ...], levels: int) -> tuple[Tensor, ...]:
    """Split flags of the tree whose leaves are all the top cells (no cell splits)."""
    if levels == 1:
        return ()
    return (torch.zeros(planes * math.prod(grid), dtype=torch.bool), *(torch.zeros(0, dtype=torch.bool) for _ in range(levels - 2)))


def full_tree(planes: int, grid: tuple[int, ...], top: tuple[int, ...], levels: int) -> list[Cells]:
    """Every cell of every level (the tree in which every cell splits): what a search scores."""
    sizes = level_sizes(top, levels)
    nodes = [top_cells(planes, grid, sizes[0])]
    for _ in range(levels - 1):
        nodes.append(children(nodes[-1]))
    return nodes
