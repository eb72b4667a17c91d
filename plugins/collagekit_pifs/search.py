"""Best (domain, transform) per range block: batched least squares, exhaustive, classified or nearest.

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
``nearest`` (after Saupe 1995/1996): the same canonical queries, but the domains are first cut to a
lean pool (the largest variances) and grouped by k-means on their normalised (zero-mean, unit-norm)
features; a query is compared exactly only with the domains of the few clusters nearest to its own
features -- an inverted-file nearest-neighbour search whose every step is a batched tensor operation.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from einops import rearrange
from torch import Tensor
from torch.nn import functional as F

from collagekit.search import row_min
from collagekit_pifs import transforms
from collagekit_pifs.params import PifsParams

Search = Literal["exhaustive", "oriented", "classified", "classified-full", "nearest"]
SEARCHES: tuple[str, ...] = ("exhaustive", "oriented", "classified", "classified-full", "nearest")
CLASSES = {"oriented": "none", "classified": "major", "classified-full": "full"}
AMBIGUITY = 0.15  # second-guess queries for blocks whose closest quadrant means differ by < this x spread
CHUNK_ELEMENTS = 1 << 18  # (range, candidate) pairs per chunk: 1 MB temporaries stay in cache
# nearest: measured on the 4 grey Kodak crops (docs/results/pifs.md)
POOL_FRACTION = 0.5  # share of domains (largest variance first) that are searched at all
FEATURE = 4  # features are blocks averaged down to at most 4 x 4 pixels
CLUSTERS = 64  # at most this many clusters per level ...
CLUSTER_SIZE = 64  # ... and at least this many domains per cluster on average
PROBES = 4  # clusters searched per query
TIED_PROBES = 2  # ... and per second-guess query of a nearly tied orientation
KMEANS_ITERS = 4
SEARCH_SIZE = 8  # larger blocks are searched averaged down to 8 x 8 pixels


def _centre(blocks: Tensor) -> tuple[Tensor, Tensor]:
    """(k n) -> centred (k n), squared norms (k,)."""
    centred = blocks - blocks.mean(1, keepdim=True)
    return centred, (centred * centred).sum(1)


def _prepare(cands: Tensor, params: PifsParams) -> tuple[Tensor, Tensor, Tensor]:
    """(m n) candidates -> (centred, transposed (n m); 1 / (step |D~|^2) (m,); step |D~|^2 (m,)).

    Work in lattice units u = s / step (fewer passes): error = step * u (u step |D~|^2 - 2 <R~, D~>).
    A flat candidate (|D~| = 0) gets u = 0: its error is the flat fit's, never NaN."""
    dc, dn2 = _centre(cands)
    step = params.s_step
    inv = torch.where(dn2 > 1e-12, 1.0 / (step * dn2.clamp_min(1e-12)), torch.zeros_like(dn2))
    return dc.T.contiguous(), inv, dn2 * step


def _best(rc: Tensor, dct: Tensor, inv: Tensor, scaled: Tensor, params: PifsParams, nonneg: bool) -> tuple[Tensor, Tensor]:
    """(k n) centred ranges, candidates prepared by :func:`_prepare` (or a column slice of them)
    -> (best index (k,), error up to |R~|^2 (k,)); chunks of ranges keep the temporaries in cache."""
    k, m = rc.shape[0], dct.shape[1]
    if m == 0:
        return torch.zeros(k, dtype=torch.long), torch.full((k,), float("inf"))
    lo = 0.0 if nonneg else -float(params.s_zero)
    hi = float(params.s_zero)
    chunk = max(1, CHUNK_ELEMENTS // m)
    best_idx, best_err = [], []
    for i in range(0, k, chunk):
        cross = rc[i : i + chunk] @ dct  # (c m)
        u = cross * inv
        u.clamp_(lo, hi).round_()
        err = u * scaled
        err.sub_(cross, alpha=2.0).mul_(u)
        value, index = row_min(err)
        best_idx.append(index)
        best_err.append(value)
    index, value = (best_idx[0], best_err[0]) if len(best_idx) == 1 else (torch.cat(best_idx), torch.cat(best_err))
    return index, value * params.s_step


def best_candidates(ranges: Tensor, cands: Tensor, params: PifsParams, nonneg: bool = False) -> tuple[Tensor, Tensor]:
    """(k n) ranges, (m n) candidates -> (best index (k,), error up to a per-range constant (k,)).

    The error omits ``|R~|^2`` (the same for every candidate of a range), so errors compare within a
    range, also across calls. ``nonneg`` restricts s to [0, s_max].
    """
    rc, _ = _centre(ranges)
    return _best(rc, *_prepare(cands, params), params, nonneg)


# ---------------------------------------------------------------- classification
RANK_WEIGHTS = (64, 16, 4, 1)  # ranks (tl, tr, bl, br), each 0..3, as one base-4 number


def _ranks(values: Tensor) -> Tensor:
    """(m 4) -> (m 4) int64 ranks 0..3 (ties broken by position, so ranks are distinct): the rank of
    entry i counts the entries below it and the equal ones before it (a stable argsort's position)."""
    v_i, v_j = values[:, :, None], values[:, None, :]
    before = torch.ones(4, 4, dtype=torch.bool).tril(-1)  # before[i, j]: j < i
    return ((v_j < v_i) | ((v_j == v_i) & before)).sum(2)


@lru_cache(maxsize=1)
def _orientation_table() -> tuple[Tensor, Tensor]:
    """(canonical transform (256,), canonical key (256,)) for every base-4 rank code.

    For a 2x2 grid of distinct ranks the canonical transform is the one whose turned grid, read as a
    base-4 number, is largest; the key is that number (the Fisher class of the block)."""
    weights = torch.tensor(RANK_WEIGHTS)
    digits = torch.stack([torch.arange(256) // w % 4 for w in RANK_WEIGHTS], 1)  # (256 4)
    turned = transforms.all_transforms(digits.reshape(256, 2, 2)).reshape(transforms.COUNT, 256, 4)
    key, canonical = (turned * weights).sum(-1).max(0)
    return canonical, key


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
        ranks[rows, lower], ranks[rows, upper] = j + 1, j
    weights = torch.tensor(RANK_WEIGHTS)
    table_canonical, table_key = _orientation_table()
    code = (ranks * weights).sum(1)
    canonical, key = table_canonical[code], table_key[code]
    if classes == "none":
        return canonical, torch.zeros_like(key)
    if classes == "full":
        var_ranks = _ranks(quads.var(2)).gather(1, transforms.block_permutations(2)[canonical])
        return canonical, key * 256 + (var_ranks * weights).sum(-1)
    return canonical, key


def _canonical_blocks(blocks: Tensor, canonical: Tensor) -> Tensor:
    """(m r r), (m,) -> (m r r): each block turned by its own transform."""
    return transforms.turn(blocks, canonical)


def _tie_ratio(blocks: Tensor) -> Tensor:
    """(m r r) -> (m,): smallest gap between quadrant means in rank order, relative to their spread."""
    quads = rearrange(blocks, "m (i a) (j b) -> m (i j) (a b)", i=2, j=2).mean(2)
    values = quads.sort(dim=1).values
    gaps = values[:, 1:] - values[:, :-1]
    return gaps.amin(1) / (values[:, -1] - values[:, 0]).clamp_min(1e-12)


def _queries(ranges: Tensor, classes: str, ambiguity: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(k r r) -> canonical queries (q r r), their canonical transform (q,), class (q,), source (q,).

    Each range is queried as ``R`` (s >= 0) and as ``-R`` (s <= 0, whose brightness order is reversed);
    where two quadrant means are nearly tied (the orientation is then unstable) also with those two
    swapped. ``source`` indexes the signed ranges (``i`` is ``R_i``, ``k + i`` is ``-R_i``), in order."""
    signed = torch.cat([ranges, -ranges])
    can, cls = classify(signed, classes)
    tied = (_tie_ratio(signed) < ambiguity).nonzero().squeeze(1)
    can_b, cls_b = classify(signed[tied], classes, swap_closest=True)
    source = torch.cat([torch.arange(signed.shape[0]), tied])
    q_can = torch.cat([can, can_b])
    return _canonical_blocks(signed[source], q_can), q_can, torch.cat([cls, cls_b]), source


def _bucket_search(
    q_blocks: Tensor, q_label: Tensor, d_blocks: Tensor, d_label: Tensor, params: PifsParams
) -> tuple[Tensor, Tensor]:
    """(q n) queries with labels (q p), (d n) domains with labels (d,) -> (domain (q p), error (q p)).

    Query ``i`` is compared, for each of its ``p`` labels (-1: none), with the domains of that label
    only, s >= 0. Queries and domains are sorted by label once, so every label's share is one
    contiguous slice; then a Python loop over the labels both sides hold, each a batched search. inf
    where a query's label has no domains."""
    q, p = q_label.shape
    flat = q_label.reshape(-1)
    searched = flat >= 0
    size = int(max(flat.max(), d_label.max())) + 1 if flat.numel() and d_label.numel() else 0
    q_count = torch.bincount(flat[searched], minlength=size)
    d_count = torch.bincount(d_label, minlength=size)
    q_end = int((~searched).sum()) + q_count.cumsum(0)  # labels -1 sort first
    d_end = d_count.cumsum(0)
    q_order, d_order = flat.argsort(stable=True), d_label.argsort(stable=True)
    rc = _centre(q_blocks)[0][q_order // p]  # (q p n), sorted by label
    dct, inv, scaled = _prepare(d_blocks[d_order], params)
    found = torch.zeros(q * p, dtype=torch.long)
    error = torch.full((q * p,), float("inf"))
    both = ((q_count > 0) & (d_count > 0)).nonzero().squeeze(1)
    slices = [t[both].tolist() for t in (q_end - q_count, q_end, d_end - d_count, d_end)]
    for qs, qe, ds, de in zip(*slices):
        index, err = _best(rc[qs:qe], dct[:, ds:de], inv[ds:de], scaled[ds:de], params, nonneg=True)
        found[qs:qe], error[qs:qe] = index + ds, err
    domain, unsorted = torch.empty_like(found), torch.empty_like(error)
    domain[q_order], unsorted[q_order] = d_order[found], error
    return domain.reshape(q, p), unsorted.reshape(q, p)


def _pick(k: int, source: Tensor, q_can: Tensor, found: Tensor, error: Tensor, d_can: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Best of every range's queries -> (domain (k,), transform (k,), error (k,)); ties go to the first query.

    R_can = T_a R and D_can = T_b D, so R ~ s T_a^-1 T_b D + o (and -R ~ ... with s <= 0)."""
    q, p = found.shape
    compose, inverse = transforms.tables()
    owner = (source % k).repeat_interleave(p)  # the range of every (query, label) pair
    flat = error.reshape(-1)
    best = torch.full((k,), float("inf")).scatter_reduce(0, owner, flat, "amin")
    hit = flat == best[owner]
    first = torch.full((k,), q * p).scatter_reduce(0, owner[hit], torch.arange(q * p)[hit], "amin")
    domain = found.reshape(-1)[first]
    return domain, compose[inverse[q_can[first // p]], d_can[domain]], best


def classified_search(
    ranges: Tensor, domains: Tensor, params: PifsParams, classes: str, ambiguity: float = AMBIGUITY
) -> tuple[Tensor, Tensor, Tensor]:
    """(k r r) ranges, (d r r) pooled domains -> (domain (k,), transform (k,), error (k,)).

    Error as in :func:`best_candidates` (inf where no domain shares a class with the range)."""
    k, r, _ = ranges.shape
    d_can, d_cls = classify(domains, classes)
    d_blocks = _canonical_blocks(domains, d_can).reshape(-1, r * r)
    q_blocks, q_can, q_cls, source = _queries(ranges, classes, ambiguity)
    found, error = _bucket_search(q_blocks.reshape(-1, r * r), q_cls[:, None], d_blocks, d_cls, params)
    return _pick(k, source, q_can, found, error, d_can)


# ---------------------------------------------------------------- nearest neighbours
def features(blocks: Tensor) -> Tensor:
    """(m r r) -> (m f) normalised block features: zero mean, unit norm, averaged down to at most
    FEATURE x FEATURE pixels (Saupe's observation: the best match is the nearest neighbour of these)."""
    m, r, _ = blocks.shape
    if r > FEATURE:
        blocks = F.avg_pool2d(blocks[:, None], r // FEATURE)[:, 0]
    centred = blocks.reshape(m, -1) - blocks.reshape(m, -1).mean(1, keepdim=True)
    return centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-8)


def _shrink(blocks: Tensor) -> Tensor:
    """(m r r) -> (m s s), s = min(r, SEARCH_SIZE): averaged down and scaled by r / s, so inner products
    are those of the blocks' projections on piecewise-constant functions. Quadrant means, and so the
    canonical orientation, are unchanged, and shrinking commutes with the dihedral transforms."""
    f = blocks.shape[1] // min(blocks.shape[1], SEARCH_SIZE)
    return blocks if f == 1 else F.avg_pool2d(blocks[:, None], f)[:, 0] * f


def spherical_kmeans(x: Tensor, clusters: int, iters: int = KMEANS_ITERS) -> tuple[Tensor, Tensor]:
    """(m f) unit rows -> (unit centroids (clusters f), cluster of every row (m,)): Lloyd's algorithm on
    the cosine, started deterministically from evenly spaced rows (the same image gives the same code).
    The labels are those the final centroids were averaged from."""
    centroids = x[torch.linspace(0, x.shape[0] - 1, clusters).long()]
    for _ in range(iters):
        labels = (x @ centroids.T).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        norms = sums.norm(dim=1, keepdim=True)
        centroids = torch.where(norms > 1e-8, sums / norms.clamp_min(1e-8), centroids)  # empty: keep
    return centroids, labels


def _nearest_clusters(x: Tensor, centroids: Tensor, probes: int) -> Tensor:
    """(q f), (c f) -> (q probes) int64: the clusters of largest cosine, nearest first.
    (numpy's partial sort, then a sort of the few: several times faster than ``torch.topk`` here.)"""
    scores = -(x @ centroids.T).numpy()
    if probes < scores.shape[1]:
        part = np.argpartition(scores, probes - 1, axis=1)[:, :probes]
    else:
        part = np.broadcast_to(np.arange(probes), scores.shape)
    order = np.take_along_axis(scores, part, 1).argsort(1, kind="stable")
    return torch.from_numpy(np.take_along_axis(part, order, 1).astype(np.int64))


def nearest_search(ranges: Tensor, domains: Tensor, params: PifsParams) -> tuple[Tensor, Tensor, Tensor]:
    """(k r r) ranges, (d r r) pooled domains -> (domain (k,), transform (k,), error (k,)).

    Saupe-style nearest-neighbour search, batched: blocks larger than SEARCH_SIZE are compared
    averaged down to it; the POOL_FRACTION of domains with the largest variance (Saupe's lean domain
    pool: a flat domain would need |s| > s_max to match a busy range), turned to canonical
    orientation, are clustered by their normalised features (spherical k-means); every canonical query
    (as in :func:`classified_search`, one class) is compared exactly with the domains of its PROBES
    nearest clusters only. The error is that of the averaged-down blocks."""
    k, d = ranges.shape[0], domains.shape[0]
    if d == 0:
        return torch.zeros(k, dtype=torch.long), torch.zeros(k, dtype=torch.long), torch.full((k,), float("inf"))
    ranges, domains = _shrink(ranges), _shrink(domains)
    r = ranges.shape[1]
    _, variance = _centre(domains.reshape(d, -1))
    pool = variance.topk(max(1, round(POOL_FRACTION * d))).indices.sort().values
    d_can, _ = classify(domains[pool], "none")
    d_turned = _canonical_blocks(domains[pool], d_can)
    d_feat = features(d_turned)
    centroids, d_label = spherical_kmeans(d_feat, max(1, min(CLUSTERS, pool.numel() // CLUSTER_SIZE)))
    q_blocks, q_can, _, source = _queries(ranges, "none", AMBIGUITY)
    q_label = _nearest_clusters(features(q_blocks), centroids, min(PROBES, centroids.shape[0]))
    # Second-guess orientations (queries past the 2k signed ranges) probe fewer clusters.
    q_label[2 * k :, min(TIED_PROBES, q_label.shape[1]) :] = -1
    found, error = _bucket_search(q_blocks.reshape(-1, r * r), q_label, d_turned.reshape(-1, r * r), d_label, params)
    domain, transform, error = _pick(k, source, q_can, found, error, d_can)
    return pool[domain], transform, error


def search(ranges: Tensor, domains: Tensor, params: PifsParams, method: Search) -> tuple[Tensor, Tensor]:
    """(k r r) ranges, (d r r) pooled domain blocks -> (domain (k,), transform (k,)) of the best match."""
    k, r, _ = ranges.shape
    if method == "exhaustive":
        cands = transforms.all_transforms(domains).reshape(-1, r * r)  # (8 d) candidates, transform-major
        index, _ = best_candidates(ranges.reshape(k, -1), cands, params)
        return index % domains.shape[0], index // domains.shape[0]
    if method == "nearest":
        domain, transform, _ = nearest_search(ranges, domains, params)
        return domain, transform
    if method in CLASSES:
        domain, transform, _ = classified_search(ranges, domains, params, CLASSES[method])
        return domain, transform
    raise ValueError(f"unknown PIFS search {method!r}")
