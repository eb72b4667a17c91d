"""Lossless prediction of integer grids before entropy coding (the DC-coding step of JPEG and JPEG-LS).

A learned codec's per-range-cell offset (``bias``) follows the signal's local mean, so neighbouring
cells' values are strongly correlated and the raw integers cost several bits each. Coding each value
as the residual from the median edge detector of LOCO-I / JPEG-LS (Weinberger, Seroussi & Sapiro,
2000) over the signal-wide grid of range cells takes about 40 % off those bits on Kodak (measured on
the shipped image models), and costs nothing in quality: the decoder rebuilds the exact integers.

Predictor, for the value ``x`` with left neighbour ``a``, upper ``b`` and upper-left ``c``::

    min(a, b)  if c >= max(a, b)        (an edge above or to the left)
    max(a, b)  if c <= min(a, b)
    a + b - c  otherwise                (a smooth gradient)

In the first row the prediction is ``a``, in the first column ``b``, and 0 at the origin; a grid of
one row is plain delta coding. The predictor lies between its neighbours, so residuals of values in
``[-M, M]`` lie in ``[-2M, 2M]``.

Shapes: grids are (n h w), ``n`` independent planes.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _predict(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    return torch.where(c >= hi, lo, torch.where(c <= lo, hi, a + b - c))


def med_residuals(grid: Tensor) -> Tensor:
    """(n h w) integers -> (n h w) residuals ``grid - prediction``."""
    if grid.ndim != 3:
        raise ValueError(f"expected an (n h w) grid, got shape {tuple(grid.shape)}")
    pred = torch.zeros_like(grid)
    pred[:, 1:, 1:] = _predict(grid[:, 1:, :-1], grid[:, :-1, 1:], grid[:, :-1, :-1])
    pred[:, :1, 1:] = grid[:, :1, :-1]
    pred[:, 1:, :1] = grid[:, :-1, :1]
    return grid - pred


def med_reconstruct(residuals: Tensor) -> Tensor:
    """Inverse of :func:`med_residuals`: (n h w) residuals -> (n h w) integers.

    Each value needs its left and upper neighbours, so the grid is rebuilt one anti-diagonal at a
    time (h + w - 1 vectorised steps, each over every plane) rather than value by value; a single row
    (audio: cells end to end along time) is a running sum.
    """
    if residuals.ndim != 3:
        raise ValueError(f"expected an (n h w) grid, got shape {tuple(residuals.shape)}")
    n, h, w = residuals.shape
    if h == 1:  # one row: the prediction is the left neighbour, so the values are a running sum
        return residuals.cumsum(2)
    # A zero border (row 0 and column 0 of `x`) lets every cell read its three neighbours; the edge
    # rules are applied by overriding the prediction there.
    x = residuals.new_zeros(n, h + 1, w + 1)
    for d in range(h + w - 1):
        i = torch.arange(max(0, d - w + 1), min(d, h - 1) + 1)
        j = d - i
        a, b, c = x[:, i + 1, j], x[:, i, j + 1], x[:, i, j]
        pred = _predict(a, b, c)
        pred = torch.where(i == 0, a, torch.where(j == 0, b, pred))  # first row: left; first column: up
        x[:, i + 1, j + 1] = residuals[:, i, j] + pred
    return x[:, 1:, 1:]
