"""Canonical orientations: a block's canonical variant depends only on its orbit, and a search that tries
every orientation of each range against the domains' canonical variants is the exhaustive search."""

from __future__ import annotations

import pytest
import torch
from collage_fixtures import F64, Segments, Tiles, _one_thread  # noqa: F401 - _one_thread is an autouse fixture
from collagekit_audio.components import SignTime
from collagekit_image.components import Dihedral

from collagekit import sparse
from collagekit.errors import CollagekitError
from collagekit.grid import AveragePooler
from collagekit.operator import GridCollage
from collagekit.orientation import Orientations
from collagekit.search import Quantiser, search_tree


def _collage(ndim: int) -> GridCollage:
    if ndim == 2:
        part, aux = Tiles(range_size=8, domain_size=16, domain_stride=4, levels=2), [Dihedral()]
    else:
        part, aux = Segments(range_size=8, domain_size=16, domain_stride=4, levels=2), [SignTime()]
    return GridCollage(part, AveragePooler(), aux, contraction=0.9, mixing="sparse", sources=1).double()


def test_the_canonical_variant_depends_only_on_the_orbit() -> None:
    size = (4, 4)
    perm, _ = sparse.variant_table(_collage(2), size, 1)
    turns = Orientations.of(perm, size)
    blocks = torch.randn(50, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    blocks = blocks - blocks.mean(-1, keepdim=True)
    canonical = {}
    for variant in range(perm.shape[0]):
        turned = blocks[:, perm[variant]]  # every block turned by one variant
        orbit = turned[:, perm].transpose(0, 1)  # (u n r): that block's variants
        chosen = turns.canonical(orbit)
        canonical[variant] = orbit[chosen, torch.arange(50)]
        assert torch.equal(turns.canonical((-orbit)), chosen)  # energy decides: a negative block agrees
    assert all(torch.equal(c, canonical[0]) for c in canonical.values())


@pytest.mark.parametrize("ndim", [1, 2])
def test_every_orientation_against_canonical_domains_is_the_exhaustive_search(ndim: int) -> None:
    collage = _collage(ndim)
    shape = (1, 1, 32, 24) if ndim == 2 else (1, 1, 96)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=F64)  # rough: every variant is somewhere best
    quantiser = Quantiser(0.9 / 7, 4 / 255)
    full = search_tree(collage, x, quantiser)
    variants = sparse.variant_table(collage, (8, 8) if ndim == 2 else (8,), 1)[0].shape[0]
    every = search_tree(collage, x, quantiser, orientations=variants)
    one = search_tree(collage, x, quantiser, orientations=1)
    for level in range(2):
        exact = full.codes[level].error[:, 0]
        assert torch.allclose(every.codes[level].error[:, 0], exact, rtol=1e-9, atol=1e-12)
        assert float(one.codes[level].error[:, 0].sum()) > float(exact.sum())  # fewer pairs compared


def test_variants_that_are_not_a_group_are_refused() -> None:
    size = (4, 4)
    perm, _ = sparse.variant_table(_collage(2), size, 1)
    with pytest.raises(CollagekitError, match="form a group"):
        Orientations.of(perm[:2], size)  # the identity and one rotation, without its inverse
