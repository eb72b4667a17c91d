"""A deblocking post-filter for signals decoded cell by cell, with strengths the encoder fits and signals.

Every range cell of a learned codec is decoded on its own (its own offset and weights), and every
tile is an independent collage, so at low rates the reconstruction steps at cell borders. The filter
moves the samples on both sides of each border toward each other by a fraction of the step across
it: a sample at distance ``d`` (0, 1, 2 samples from the border) moves by ``alpha_d`` times the step
between the two samples next to the border. Tile borders and the other range-cell borders have their
own three strengths. The filter is linear in its strengths, so the encoder fits them to the original
by least squares and stores them (integers in units of 1/64, in the file's header); the decoder
applies them. H.264's deblocking filter and VVC's adaptive loop filter, whose coefficients are also
fitted by the encoder and signalled, are the models.

At ``scale`` S the borders lie S times further apart and each distance covers S samples. Signals are
(b c *spatial) with any number of spatial axes; steps are measured on the unfiltered signal.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

DISTANCES = 3
UNIT = 64  # strengths are integers in units of 1 / UNIT
LIMIT = 32  # |strength| <= LIMIT / UNIT = 1/2: beyond it a border sample would cross its neighbour
STRENGTHS = 2 * DISTANCES  # tile borders d = 0..2, then the other cell borders d = 0..2
MAX_FIT_ELEMENTS = 1 << 22  # strengths are fitted on at most this many samples (a corner of the signal)


def _features(x: Tensor, cell: int, tile: int, scale: int, out: Tensor | None = None) -> Iterator[Tensor]:
    """The filter's :data:`STRENGTHS` basis signals, each (b c *spatial) like ``x``; written into the rows
    of ``out`` (STRENGTHS b c *spatial, zeros) when given."""
    spatial = range(2, x.ndim)
    for tile_borders in (True, False):
        for d in range(DISTANCES):
            f = torch.zeros_like(x) if out is None else out[(DISTANCES if not tile_borders else 0) + d]
            for axis in spatial:
                n = x.shape[axis]
                if n <= cell * scale:
                    continue  # a signal no longer than one cell along this axis has no border on it
                pos = torch.arange(cell * scale, n, cell * scale, device=x.device)
                pos = pos[(pos % (tile * scale) == 0) == tile_borders]
                if not len(pos):
                    continue
                step = x.index_select(axis, pos) - x.index_select(axis, pos - 1)
                for k in range(d * scale, (d + 1) * scale):
                    keep = ((pos - 1 - k >= 0) & (pos + k < n)).nonzero().flatten()
                    moved = step.index_select(axis, keep)
                    f.index_add_(axis, pos[keep] - 1 - k, moved)  # the sample before the border rises by the step
                    f.index_add_(axis, pos[keep] + k, -moved)  # the one after it falls
            yield f


def fit(decoded: Tensor, target: Tensor, cell: int, tile: int) -> list[int]:
    """(1 1 *spatial) decoded and original signals (scale 1) -> the :data:`STRENGTHS` integer strengths
    (units of 1 / :data:`UNIT`) that bring the decoded signal closest to the original."""
    region = tuple(slice(0, s) for s in _fit_region(decoded.shape[2:], tile))
    decoded, target = decoded[(..., *region)].float(), target[(..., *region)].float()
    basis = decoded.new_zeros(STRENGTHS, *decoded.shape)
    for _ in _features(decoded, cell, tile, 1, out=basis):
        pass  # each basis signal lands in its row
    basis = basis.view(STRENGTHS, -1)  # (STRENGTHS n)
    # Single precision up to the normal equations (2.5x faster than double on a Kodak image): the
    # strengths are rounded to 1/64, far above float32's error on sums of a few million terms.
    gram = (basis @ basis.T).double()
    rhs = (basis @ (target - decoded).flatten()).double()
    # A small ridge keeps the solve defined when a class of borders is absent (a one-tile signal).
    alpha = torch.linalg.solve(gram + 1e-9 * torch.eye(STRENGTHS, dtype=gram.dtype) * (1 + gram.trace()), rhs)
    return [int(v) for v in (alpha * UNIT).round().clamp(-LIMIT, LIMIT).tolist()]


def _fit_region(spatial: tuple[int, ...], tile: int) -> tuple[int, ...]:
    """Halve the largest extent (keeping whole tiles) until the region is small enough to fit on."""
    region = list(spatial)
    while torch.Size(region).numel() > MAX_FIT_ELEMENTS:
        axis = max(range(len(region)), key=lambda i: region[i])
        region[axis] = max(tile, (region[axis] // 2) // tile * tile)
    return tuple(region)


def apply(x: Tensor, strengths: list[int], cell: int, tile: int, scale: int = 1) -> Tensor:
    """(b c *spatial) -> the filtered signal; ``strengths`` from :func:`fit` (all zero: unchanged)."""
    if not any(strengths):
        return x
    out = x.clone()
    for alpha, f in zip(strengths, _features(x, cell, tile, scale)):
        if alpha:
            out += (alpha / UNIT) * f
    return out


def valid(strengths: object) -> bool:
    """Whether a header's value is a list of :data:`STRENGTHS` integers within the limit."""
    return (
        isinstance(strengths, list)
        and len(strengths) == STRENGTHS
        and all(isinstance(v, int) and not isinstance(v, bool) and abs(v) <= LIMIT for v in strengths)
    )
