"""Best (domain, transform) per range block: batched least squares, exhaustive or classified.

Shapes: ``k`` range blocks, ``m`` candidate blocks, ``n = r*r`` pixels per block. For centred blocks
``R~ = R - mean R`` and ``D~ = D - mean D`` the squared error of ``s D + o`` at the best ``o`` is

    |R~|^2 - 2 s <R~, D~> + s^2 |D~|^2,

so every (range, candidate) error comes from one matrix product ``R~ @ D~^T`` and two norm vectors,
with ``s`` clamped to ``|s| <= s_max`` and rounded to the contrast lattice *before* the error is taken,
so the search ranks candidates by the error the stored code will really have. Ranges are processed in
chunks (bounded memory), never one at a time.

``exhaustive``: all domains x all 8 transforms.
``classified`` (Fisher 1995): every block is turned by the dihedral transform that puts its quadrant
means in a canonical order (brightest top-left, then top-right >= bottom-left); a range is compared
only with canonical domains of its class (the order of its quadrant means: 3 classes; with
``classified-full`` also the order of the quadrant variances: 72; ``oriented``: one class). Each range
is queried as ``R`` (s >= 0) and as ``-R`` (s <= 0, whose brightness order is reversed), each both as
ranked and with its two closest quadrant means swapped, since near-ties flip the orientation. The
transform is then fixed by the two canonicalisations: 8 x fewer candidates, and the classes split the
rest. The classes are a Python loop (at most 72 iterations), each a batched search.
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange
from torch import Tensor

from collagekit_pifs import transforms
from collagekit_pifs.params import PifsParams

Search = Literal["exhaustive", "oriented", "classified", "classified-full"]
SEARCHES: tuple[str, ...] = ("exhaustive", "oriented", "classified", "classified-full")
CLASSES = {"oriented": "none", "classified": "major", "classified-full": "full"}
AMBIGUITY = 0.15  # second-guess queries for blocks whose closest quadrant means differ by < this x spread
GROUP = 16  # candidates per group in the two-stage row minimum
CHUNK_ELEMENTS = 1 << 18  # (range, candidate) pairs per chunk: 1 MB temporaries stay in cache


def _centre(blocks: Tensor) -> tuple[Tensor, Tensor]:
    """(k n) -> centred (k n), squared norms (k,)."""
    centred = blocks - blocks.mean(1, keepdim=True)
    return centred, (centred * centred).sum(1)


def _row_min(err: Tensor) -> tuple[Tensor, Tensor]:
    """(c m) with m a multiple of GROUP -> (min (c,), argmin (c,)).

    Same minimum as ``err.min(1)``, several times faster on the CPU: the row is cut into GROUP
    contiguous slices whose elementwise minimum (a vectorised ``amin`` across slices) is searched
    with indices; then only the GROUP entries at the winning offset are compared."""
    c, m = err.shape
    slices = err.reshape(c, GROUP, m // GROUP)
    value, offset = slices.amin(1).min(1)
    which = slices[torch.arange(c), :, offset].argmin(1)
    return value, which * (m // GROUP) + offset


def best_candidates(ranges: Tensor, cands: Tensor, params: PifsParams, nonneg: bool = False) -> tuple[Tensor, Tensor]:
    """(k n) ranges, (m n) candidates -> (best index (k,), error up to a per-range constant (k,)).

    The error omits ``|R~|^2`` (the same for every candidate of a range), so errors compare within a
    range, also across calls. ``nonneg`` restricts s to [0, s_max].
    """
    k, m = ranges.shape[0], cands.shape[0]
    if m == 0:
        return torch.zeros(k, dtype=torch.long), torch.full((k,), float("inf"))
    rc, _ = _centre(ranges)
    dc, dn2 = _centre(cands)
    if m % GROUP:  # pad with copies of candidate 0 (mapped back below) so rows split into groups
        extra = GROUP - m % GROUP
        dc = torch.cat([dc, dc[:1].expand(extra, -1)])
        dn2 = torch.cat([dn2, dn2[:1].expand(extra)])
    step = params.s_step
    # Work in lattice units u = s / step (fewer passes): error = step * u (u step |D~|^2 - 2 <R~, D~>).
    # A flat candidate (|D~| = 0) gets u = 0: its error is the flat fit's, never NaN.
    inv = torch.where(dn2 > 1e-12, 1.0 / (step * dn2.clamp_min(1e-12)), torch.zeros_like(dn2))
    scaled = dn2 * step
    lo = 0.0 if nonneg else -float(params.s_zero)
    hi = float(params.s_zero)
    chunk = max(1, CHUNK_ELEMENTS // m)
    best_idx, best_err = [], []
    dct = dc.T.contiguous()
    for i in range(0, k, chunk):
        cross = rc[i : i + chunk] @ dct  # (c m)
        u = cross * inv
        u.clamp_(lo, hi).round_()
        err = u * scaled
        err.sub_(cross, alpha=2.0).mul_(u)
        value, index = _row_min(err)
        best_idx.append(torch.where(index >= m, 0, index))
        best_err.append(value * step)
    return torch.cat(best_idx), torch.cat(best_err)


# ---------------------------------------------------------------- classification
def _ranks(values: Tensor) -> Tensor:
    """(m 4) -> (m 4) int64 ranks 0..3 (ties broken by position, so ranks are distinct)."""
    order = values.argsort(dim=1, stable=True)
    return order.argsort(dim=1, stable=True)


def classify(blocks: Tensor, classes: str, swap_closest: bool = False) -> tuple[Tensor, Tensor]:
    """(m r r) -> (canonical transform (m,), class (m,)).

    The canonical transform ``a`` maximises the lexicographic order of the quadrant-mean ranks
    (tl, tr, bl, br); ``apply(a, block)`` is the canonical block. ``swap_closest``: rank as if the two
    closest quadrant means were the other way round -- the second guess for blocks near a tie, where
    a match's orientation (or class) could flip.
    """
    m, r, _ = blocks.shape
    quads = rearrange(blocks, "m (i a) (j b) -> m (i j) (a b)", i=2, j=2)
    means = quads.mean(2)
    ranks = _ranks(means)
    if swap_closest:
        values, order = means.sort(dim=1, stable=True)
        j = (values[:, 1:] - values[:, :-1]).argmin(1)  # (m,): the closest adjacent pair in rank order
        rows = torch.arange(m)
        lower, upper = order[rows, j], order[rows, j + 1]
        ranks = ranks.clone()
        ranks[rows, lower], ranks[rows, upper] = j + 1, j
    variants = transforms.all_transforms(ranks.reshape(m, 2, 2)).reshape(transforms.COUNT, m, 4)  # (8 m 4)
    weights = torch.tensor([64, 16, 4, 1])
    keys = (variants * weights).sum(-1)  # (8 m): distinct ranks -> distinct keys
    key, canonical = keys.max(0)
    cls = key if classes != "none" else torch.zeros_like(key)
    if classes == "full":
        var_ranks = _ranks(quads.var(2)).reshape(m, 2, 2)
        turned = transforms.all_transforms(var_ranks).reshape(transforms.COUNT, m, 4)
        turned = turned[canonical, torch.arange(m)]
        cls = key * 256 + (turned * weights).sum(-1)
    return canonical, cls


def _canonical_blocks(blocks: Tensor, canonical: Tensor) -> Tensor:
    """(m r r), (m,) -> (m r r): each block turned by its own transform."""
    return transforms.turn(blocks, canonical)


def _tie_ratio(blocks: Tensor) -> Tensor:
    """(m r r) -> (m,): smallest gap between quadrant means in rank order, relative to their spread."""
    quads = rearrange(blocks, "m (i a) (j b) -> m (i j) (a b)", i=2, j=2).mean(2)
    values = quads.sort(dim=1).values
    gaps = values[:, 1:] - values[:, :-1]
    return gaps.amin(1) / (values[:, -1] - values[:, 0]).clamp_min(1e-12)


def classified_search(
    ranges: Tensor, domains: Tensor, params: PifsParams, classes: str, ambiguity: float = AMBIGUITY
) -> tuple[Tensor, Tensor, Tensor]:
    """(k r r) ranges, (d r r) pooled domains -> (domain (k,), transform (k,), error (k,)).

    Error as in :func:`best_candidates` (inf where no domain shares a class with the range)."""
    k, r, _ = ranges.shape
    compose, inverse = transforms.tables()
    d_can, d_cls = classify(domains, classes)
    d_blocks = _canonical_blocks(domains, d_can).reshape(-1, r * r)
    # Up to four queries per range: R (s >= 0) and -R (s <= 0), each canonicalised as is and, where two
    # quadrant means are nearly tied (the orientation is then unstable), with those two swapped.
    signed = torch.cat([ranges, -ranges])
    can_a, cls_a = classify(signed, classes)
    can_b, cls_b = classify(signed, classes, swap_closest=True)
    cls_b = torch.where(_tie_ratio(signed) < ambiguity, cls_b, torch.full_like(cls_b, -1))  # -1: not searched
    queries = torch.cat([signed, signed])
    q_can, q_cls = torch.cat([can_a, can_b]), torch.cat([cls_a, cls_b])
    q_blocks = _canonical_blocks(queries, q_can).reshape(-1, r * r)
    found = torch.zeros(4 * k, dtype=torch.long)
    error = torch.full((4 * k,), float("inf"))
    for c in torch.unique(q_cls[q_cls >= 0]).tolist():  # a loop over classes (<= 72), each a batched search
        qi = (q_cls == c).nonzero().squeeze(1)
        di = (d_cls == c).nonzero().squeeze(1)
        if di.numel() == 0:
            continue
        index, err = best_candidates(q_blocks[qi], d_blocks[di], params, nonneg=True)
        found[qi], error[qi] = di[index], err
    pick = error.reshape(4, k).argmin(0)  # which query of each range found the best match
    rows = torch.arange(k) + pick * k
    domain = found[rows]
    # R_can = T_a R and D_can = T_b D, so R ~ s T_a^-1 T_b D + o.
    transform = compose[inverse[q_can[rows]], d_can[domain]]
    return domain, transform, error[rows]


def search(ranges: Tensor, domains: Tensor, params: PifsParams, method: Search) -> tuple[Tensor, Tensor]:
    """(k r r) ranges, (d r r) pooled domain blocks -> (domain (k,), transform (k,)) of the best match."""
    k, r, _ = ranges.shape
    if method == "exhaustive":
        cands = transforms.all_transforms(domains).reshape(-1, r * r)  # (8 d) candidates, transform-major
        index, _ = best_candidates(ranges.reshape(k, -1), cands, params)
        return index % domains.shape[0], index // domains.shape[0]
    if method in CLASSES:
        domain, transform, _ = classified_search(ranges, domains, params, CLASSES[method])
        return domain, transform
    raise ValueError(f"unknown PIFS search {method!r}")
