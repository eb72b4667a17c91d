"""The grid collage operator: cell geometry in 1D and 2D, contractivity and its bound, decoding.

Everything is small, seeded and in float64, so the file runs in about a second on a laptop CPU.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from collage_fixtures import F64, Segments, Tiles, _one_thread, random_params  # noqa: F401 - _one_thread is an autouse fixture
from collagekit_image.components import Dihedral
from torch import Tensor

from collagekit.grid import AveragePooler, GridPartitioner, LearnedPatches
from collagekit.operator import CollageParams, GridCollage
from collagekit.solver import fixed_point


def signal(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def replicate_pad(z: Tensor, size: tuple[int, ...]) -> Tensor:
    """Edge-replicate ``z`` (b c *spatial) to ``size`` by clamped indexing (independent of F.pad)."""
    for axis, want in enumerate(size):
        have = z.shape[2 + axis]
        index = torch.arange(want).clamp_max(have - 1)
        z = z.index_select(2 + axis, index)
    return z


# --------------------------------------------------------------------------- geometry

GEOMETRY = [
    # partitioner, spatial, expected (num_ranges, num_domains), padded size
    (Segments(range_size=4, domain_size=8, domain_stride=4), (13,), (4, 3), (16,)),
    (Segments(range_size=4, domain_size=8, domain_stride=4), (16,), (4, 3), (16,)),
    (Segments(range_size=3, domain_size=6, domain_stride=1), (10,), (4, 7), (12,)),
    (Tiles(range_size=(4, 3), domain_size=(8, 6), domain_stride=(4, 3)), (10, 7), (9, 4), (12, 9)),
    (Tiles(range_size=4, domain_size=8, domain_stride=2), (8, 8), (4, 1), (8, 8)),
    (Tiles(range_size=2, domain_size=4), (5, 7), (12, 2), (6, 8)),
]
GEOMETRY_IDS = ["1d-13", "1d-16", "1d-overlap", "2d-rect", "2d-exact", "2d-odd"]


@pytest.mark.parametrize(("part", "spatial", "counts", "padded"), GEOMETRY, ids=GEOMETRY_IDS)
def test_num_ranges_and_domains(part: GridPartitioner, spatial: tuple[int, ...], counts: tuple[int, int],
                                padded: tuple[int, ...]) -> None:
    """K and N (worked out by hand) for sizes that are and are not multiples of the range size."""
    assert part.padded(spatial) == padded
    assert (part.num_ranges(spatial), part.num_domains(spatial)) == counts


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize(("part", "spatial", "counts", "padded"), GEOMETRY, ids=GEOMETRY_IDS)
def test_ranges_merge_round_trip(part: GridPartitioner, spatial: tuple[int, ...], counts: tuple[int, int],
                                 padded: tuple[int, ...], scale: int) -> None:
    """ranges() -> merge() gives back the signal exactly (padding cropped), at scale 1 and 2; the range
    cells are the edge-replicated signal cut row-major into range-size blocks."""
    big = tuple(s * scale for s in spatial)
    z = signal((2, 3, *big), seed=1)
    cells = part.ranges(z, scale)
    r = part.range_size(scale)
    assert cells.shape == (2, 3, counts[0], *r)
    assert torch.equal(part.merge(cells, big, scale), z)
    # Cell k is block k (row-major) of the padded signal.
    pad = replicate_pad(z, tuple(p * scale for p in padded))
    grid = [p // (rs // scale) for p, rs in zip(padded, r)]
    for k in range(counts[0]):
        pos = [(k // math.prod(grid[i + 1:])) % grid[i] for i in range(len(grid))]
        block = pad[(slice(None), slice(None), *(slice(p * rs, (p + 1) * rs) for p, rs in zip(pos, r)))]
        assert torch.equal(cells[:, :, k], block), k


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize(("part", "spatial", "counts", "padded"), GEOMETRY, ids=GEOMETRY_IDS)
def test_domains_are_windows_of_the_padded_signal(part: GridPartitioner, spatial: tuple[int, ...],
                                                 counts: tuple[int, int], padded: tuple[int, ...], scale: int) -> None:
    """domains() returns N windows of domain size and stride (times the scale), row-major, read from the
    edge-replicated signal only."""
    big = tuple(s * scale for s in spatial)
    z = signal((1, 2, *big), seed=2)
    doms = part.domains(z, scale)
    size = tuple(d * scale for d in part._domain)
    stride = tuple(s * scale for s in part._stride)
    assert doms.shape == (1, 2, counts[1], *size)
    pad = replicate_pad(z, tuple(p * scale for p in padded))
    grid = [(p * scale - d) // s + 1 for p, d, s in zip(padded, size, stride)]
    for n in range(counts[1]):
        pos = [(n // math.prod(grid[i + 1:])) % grid[i] for i in range(len(grid))]
        window = pad[(slice(None), slice(None), *(slice(p * s, p * s + d) for p, s, d in zip(pos, stride, size)))]
        assert torch.equal(doms[:, :, n], window), n


@pytest.mark.parametrize(("part", "spatial"), [
    (Segments(range_size=4, domain_size="full"), (13,)),
    (Tiles(range_size=2, domain_size="full"), (5, 6)),
], ids=["1d", "2d"])
@pytest.mark.parametrize("scale", [1, 2])
def test_full_domain_is_the_whole_padded_signal(part: GridPartitioner, spatial: tuple[int, ...], scale: int) -> None:
    """domain_size 'full': one domain, the whole (padded) signal; the operator steps at scale 1 and 2."""
    assert part.num_domains(spatial) == 1
    big = tuple(s * scale for s in spatial)
    z = signal((2, 1, *big), seed=3)
    doms = part.domains(z, scale)
    padded = tuple(p * scale for p in part.padded(spatial))
    assert doms.shape == (2, 1, 1, *padded)
    assert torch.equal(doms[:, :, 0], replicate_pad(z, padded))
    aux = [Dihedral()] if len(spatial) == 2 else []
    collage = GridCollage(part, AveragePooler(), [*aux, LearnedPatches(count=2)]).double()
    shapes = collage.param_shapes(1, spatial)
    assert shapes["scale"][-1] == (8 if aux else 1) and shapes["aux"][-1] == 2
    params = random_params(collage, 2, 1, spatial, seed=4)
    assert collage(z, params, scale).shape == z.shape


@pytest.mark.parametrize(("part", "spatial", "aux"), [
    (Segments(range_size=4, domain_size=8, domain_stride=2), (13,), False),
    (Tiles(range_size=3, domain_size=6, domain_stride=3), (10, 7), True),
], ids=["1d", "2d"])
def test_param_shapes_and_step_shapes(part: GridPartitioner, spatial: tuple[int, ...], aux: bool) -> None:
    """param_shapes counts sources (domains + dihedral variants, learned patches); one step keeps the
    signal's shape at scale 1 and at scale 2 (same parameters)."""
    auxes = [Dihedral()] if aux else []
    collage = GridCollage(part, AveragePooler(), [*auxes, LearnedPatches(count=3)]).double()
    k, n = part.num_ranges(spatial), part.num_domains(spatial)
    dep = n * (8 if aux else 1)
    assert collage.num_sources(spatial) == (dep, 3)
    assert collage.param_shapes(2, spatial) == {"scale": (2, k, dep), "mix": (2, k, dep), "aux": (2, k, 3), "bias": (2, k)}
    params = random_params(collage, 3, 2, spatial, seed=5)
    for scale in (1, 2):
        z = signal((3, 2, *(s * scale for s in spatial)), seed=6)
        out = collage(z, params, scale)
        assert out.shape == z.shape
        assert torch.equal(out, collage.step_fn(params, spatial, scale)(z))


# --------------------------------------------------------------------------- contractivity

def many_domain_collages(contraction: float = 0.95) -> list[tuple[GridCollage, tuple[int, ...]]]:
    """A 1D collage with 65 domains and a 2D one with 49 domains x 8 dihedral variants, both with
    learned patches."""
    one = GridCollage(Segments(range_size=4, domain_size=8, domain_stride=1), AveragePooler(),
                      [LearnedPatches(count=4)], contraction=contraction).double()
    two = GridCollage(Tiles(range_size=4, domain_size=4, domain_stride=2), AveragePooler(),
                      [Dihedral(), LearnedPatches(count=4)], contraction=contraction).double()
    return [(one, (72,)), (two, (16, 16))]


def test_many_domains() -> None:
    """The contractivity tests below really have many sources per range (and more sources than ranges)."""
    for collage, spatial in many_domain_collages():
        dep, _ = collage.num_sources(spatial)
        assert collage.partitioner.num_domains(spatial) >= 49 and dep >= 64
        assert dep > collage.partitioner.num_ranges(spatial)


@pytest.mark.parametrize("magnitude", [1.0, 10.0, 1000.0])
def test_lipschitz_bound_below_one(magnitude: float) -> None:
    """For random parameters of any magnitude the reported bound is < 1 and <= contraction; strictly below
    the contraction unless tanh saturates to exactly 1 in floating point."""
    for collage, spatial in many_domain_collages(contraction=0.95):
        params = random_params(collage, 4, 2, spatial, seed=7, magnitude=magnitude)
        bound = collage.lipschitz_bound(params)
        assert bound.shape == (4,)
        assert (bound < 1).all() and (bound <= 0.95 * (1 + 1e-12)).all() and (bound > 0).all()
        if magnitude == 1.0:
            assert (bound < 0.95).all()


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("magnitude", [1.0, 30.0])
def test_lipschitz_bound_is_an_upper_bound(magnitude: float, scale: int) -> None:
    """max |F(z1) - F(z2)| <= bound * max |z1 - z2| for random pairs (noise, spikes, shifted copies), at
    scale 1 and 2; with all weights positive a constant shift attains the bound exactly."""
    for collage, spatial in many_domain_collages(contraction=0.95):
        params = random_params(collage, 2, 1, spatial, seed=8, magnitude=magnitude)
        bound = collage.lipschitz_bound(params)
        step = collage.step_fn(params, spatial, scale)
        shape = (2, 1, *(s * scale for s in spatial))
        for seed in range(4):
            z1 = signal(shape, seed=100 + seed)
            z2 = z1 + signal(shape, seed=200 + seed) * (10.0 ** (seed - 1))
            if seed == 3:
                z2 = z1 + (signal(shape, seed=300) > 1.5).to(F64)  # sparse spikes
            lhs = (step(z1) - step(z2)).flatten(1).abs().amax(-1)
            rhs = bound * (z1 - z2).flatten(1).abs().amax(-1)
            assert (lhs <= rhs * (1 + 1e-12) + 1e-12).all(), (seed, lhs, rhs)
        positive = CollageParams(params.scale.abs() + 0.1, params.mix, params.aux, params.bias)
        step = collage.step_fn(positive, spatial, scale)
        z = signal(shape, seed=9)
        gain = (step(z + 1.0) - step(z)).flatten(1).abs().amax(-1)
        torch.testing.assert_close(gain, collage.lipschitz_bound(positive), rtol=1e-12, atol=1e-12)


def test_softmax_is_over_the_sources_of_each_range() -> None:
    """Per range, sum over sources of |w| <= contraction however many sources there are; with tanh
    saturated at 1 every range's sum *equals* the contraction (softmax over ranges would give sums
    near S/K, far above 1 when sources outnumber ranges)."""
    for collage, spatial in many_domain_collages(contraction=0.9):
        params = random_params(collage, 2, 2, spatial, seed=10, magnitude=3.0)
        per_range = collage.dependent_weights(params).abs().sum(-1)  # b c k
        assert per_range.shape == (2, 2, collage.partitioner.num_ranges(spatial))
        assert (per_range < 0.9).all()
        saturated = CollageParams(params.scale.abs() + 40.0, params.mix, params.aux, params.bias)
        per_range = collage.dependent_weights(saturated).abs().sum(-1)
        torch.testing.assert_close(per_range, torch.full_like(per_range, 0.9), rtol=0, atol=1e-12)
        # And the map itself is a contraction: a constant shift moves every range by exactly 0.9.
        step = collage.step_fn(saturated, spatial)
        z = signal((2, 2, *spatial), seed=11)
        torch.testing.assert_close(step(z + 1.0) - step(z), torch.full_like(z, 0.9), rtol=0, atol=1e-12)


def test_contraction_must_be_below_one() -> None:
    """The operator refuses a contraction factor outside (0, 1)."""
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="contraction"):
            GridCollage(Segments(range_size=2, domain_size=4), AveragePooler(), contraction=bad)


# --------------------------------------------------------------------------- decoding

DECODE = [
    (lambda: GridCollage(Segments(range_size=2, domain_size=4, domain_stride=2), AveragePooler(),
                         [LearnedPatches(count=2, init_std=0.5)], contraction=0.95), (13,)),
    (lambda: GridCollage(Tiles(range_size=2, domain_size=4), AveragePooler(),
                         [Dihedral(), LearnedPatches(count=2, init_std=0.5)], contraction=0.95), (7, 8)),
]


@pytest.mark.parametrize("method", ["picard", "anderson"])
@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize(("make", "spatial"), DECODE, ids=["1d", "2d"])
def test_fixed_point_does_not_depend_on_the_start(make, spatial: tuple[int, ...], scale: int, method: str) -> None:
    """Zeros, noise and a large constant all decode to the same fixed point, and it is one: F(z*) = z*."""
    collage = make().double()
    params = random_params(collage, 2, 2, spatial, seed=12, scale_shift=1.0)
    step = collage.step_fn(params, spatial, scale)
    shape = (2, 2, *(s * scale for s in spatial))
    sols = []
    for z0 in (torch.zeros(shape, dtype=F64), 3.0 * signal(shape, seed=13), torch.full(shape, 100.0, dtype=F64)):
        z, stats = fixed_point(step, z0, method=method, tol=1e-12, max_iter=5000, gradient="none")
        assert stats.converged
        sols.append(z)
    for z in sols[1:]:
        torch.testing.assert_close(z, sols[0], rtol=0, atol=1e-10)
    assert float((step(sols[0]) - sols[0]).detach().abs().max()) <= 1e-11


@pytest.mark.parametrize(("part", "spatial"), [
    (Segments(range_size=2, domain_size=4, domain_stride=2), (16,)),
    (Tiles(range_size=2, domain_size=4), (8, 8)),
], ids=["1d", "2d"])
def test_decoding_at_scale_two_pools_back_to_scale_one(part: GridPartitioner, spatial: tuple[int, ...]) -> None:
    """Resolution independence: with average pooling (and no resampled patches) the scale-2 fixed point,
    average-pooled by 2, is the scale-1 fixed point."""
    aux = [Dihedral()] if len(spatial) == 2 else []
    collage = GridCollage(part, AveragePooler(), aux, contraction=0.9).double()
    params = random_params(collage, 2, 1, spatial, seed=14, scale_shift=1.0)
    z1, _ = fixed_point(collage.step_fn(params, spatial), torch.zeros(2, 1, *spatial, dtype=F64), tol=1e-12, gradient="none")
    big = tuple(2 * s for s in spatial)
    z2, _ = fixed_point(collage.step_fn(params, spatial, 2), torch.zeros(2, 1, *big, dtype=F64), tol=1e-12, gradient="none")
    assert z2.shape[2:] == big
    pool = F.avg_pool1d if len(spatial) == 1 else F.avg_pool2d
    torch.testing.assert_close(pool(z2, 2), z1, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("part", "spatial"), [
    (Segments(range_size=4, domain_size=8, domain_stride=4), (13,)),
    (Tiles(range_size=(2, 3), domain_size=(4, 6)), (5, 7)),
], ids=["1d", "2d"])
def test_init_params_decode_to_range_means(part: GridPartitioner, spatial: tuple[int, ...]) -> None:
    """init_params(x) decodes to x's range-cell means (the blocky mean signal), its bound is 0."""
    collage = GridCollage(part, AveragePooler(), [LearnedPatches(count=2)]).double()
    x = signal((2, 3, *spatial), seed=15)
    params = collage.init_params(x)
    assert float(collage.lipschitz_bound(params).max()) == 0.0
    z, _ = fixed_point(collage.step_fn(params, spatial), torch.zeros_like(x), tol=1e-12, gradient="none")
    cells = part.ranges(x)
    means = cells.flatten(3).mean(-1)[(..., *([None] * len(spatial)))].expand_as(cells)
    torch.testing.assert_close(z, part.merge(means, spatial), rtol=0, atol=1e-12)
