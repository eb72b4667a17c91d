"""Sparse and adaptive collages: the layout tree, the sparse step against independent references, its
contraction bound, fixed points and scale, the least-squares search, and storage in .clg files.

Small, seeded, mostly float64: a few seconds on a laptop CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from collage_fixtures import F64, Segments, Tiles, _one_thread  # noqa: F401 - _one_thread is an autouse fixture
from collagekit_audio.components import SignTime
from collagekit_image.components import Dihedral
from torch import Tensor

from collagekit import sparse, tree
from collagekit.container import from_bytes, to_bytes
from collagekit.errors import CollagekitError
from collagekit.grid import AveragePooler, LearnedPatches
from collagekit.gridcodec import GridCollageCodec, decode_grid
from collagekit.interfaces import ComponentConfig, Pooler
from collagekit.operator import CollageParams, GridCollage
from collagekit.search import row_min, search
from collagekit.solver import Picard, fixed_point
from collagekit.sparse import SparseParams, raw_weights


def signal(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _aux(ndim: int) -> list:
    return [Dihedral()] if ndim == 2 else [SignTime()]


def random_sparse(collage: GridCollage, planes: int, spatial: tuple[int, ...], seed: int, split_p: float = 0.5,
                  magnitude: float = 1.0) -> SparseParams:
    """A random layout (each cell splits with probability split_p) and random sources and weights."""
    g = torch.Generator().manual_seed(seed)
    part = collage.partitioner
    grid, top, levels = part.range_grid(spatial), part.range_size(1), part.levels
    nodes = tree.top_cells(planes, grid, top)
    split = []
    for _ in range(levels - 1):
        flags = torch.rand(len(nodes), generator=g) < split_p
        split.append(flags)
        nodes = tree.children(nodes.select(flags))
    cells = tree.leaves(tuple(split), planes, grid, top, levels)
    index = torch.cat([
        torch.randint(0, sparse.level_sources(collage, spatial, level), (len(c), collage.sources), generator=g)
        for level, c in enumerate(cells)
    ])
    m = index.shape[0]
    constants = sum(a.count(1) for a in collage.constant)
    return SparseParams(
        split=tuple(split),
        index=index,
        weight=magnitude * torch.randn(m, collage.sources, generator=g, dtype=F64),
        const_index=torch.randint(0, max(constants, 1), (m, collage.constants), generator=g),
        aux=torch.randn(m, collage.constants, generator=g, dtype=F64),
        bias=torch.randn(m, generator=g, dtype=F64),
    )


# --------------------------------------------------------------------------- the tree

def test_leaves_follow_the_split_flags_breadth_first() -> None:
    """Two planes of 2 x 1 top cells of size 4, three levels: flags split plane 0's first cell, then its
    last child; leaves come out level by level, plane-major, children row-major (tl, tr, bl, br)."""
    split = (torch.tensor([True, False, False, False]), torch.tensor([False, False, False, True]))
    cells = tree.leaves(split, 2, (2, 1), (4, 4), 3)
    assert [c.size for c in cells] == [(4, 4), (2, 2), (1, 1)]
    assert cells[0].plane.tolist() == [0, 1, 1] and cells[0].origin.tolist() == [[4, 0], [0, 0], [4, 0]]
    assert cells[1].origin.tolist() == [[0, 0], [0, 2], [2, 0]]
    assert cells[2].origin.tolist() == [[2, 2], [2, 3], [3, 2], [3, 3]]
    # The leaves tile both planes exactly once.
    cover = torch.zeros(2, 8, 4, dtype=torch.long)
    for c in cells:
        for p, (y, x) in zip(c.plane.tolist(), c.origin.tolist()):
            cover[p, y : y + c.size[0], x : x + c.size[1]] += 1
    assert bool((cover == 1).all())


def test_uniform_layout_and_bad_flags() -> None:
    cells = tree.leaves(tree.uniform(3, (2, 2), 3), 3, (2, 2), (4, 4), 3)
    assert [len(c) for c in cells] == [12, 0, 0]
    with pytest.raises(CollagekitError, match="split flags"):
        tree.leaves((torch.zeros(5, dtype=torch.bool), torch.zeros(0, dtype=torch.bool)), 3, (2, 2), (4, 4), 3)
    with pytest.raises(CollagekitError, match="cannot be halved"):
        tree.level_sizes((6, 6), 3)


# --------------------------------------------------------------------------- the step

CASES = [
    # partitioner, spatial (odd sizes: padding), with learned patches
    (lambda lv: Tiles(range_size=8, domain_size=16, domain_stride=8, levels=lv), (21, 10)),
    (lambda lv: Tiles(range_size=4, domain_size="full", levels=lv), (9, 12)),
    (lambda lv: Segments(range_size=8, domain_size=16, domain_stride=8, levels=lv), (37,)),
]


@pytest.mark.parametrize("case", range(len(CASES)), ids=["2d-local", "2d-full", "1d-local"])
@pytest.mark.parametrize("scale", [1, 2, 3])
def test_sparse_with_every_source_is_the_dense_step(case: int, scale: int) -> None:
    """Naming every source (J = S) with the dense code's effective weights gives the dense step exactly,
    learned patches included (the two paths share no code beyond the components)."""
    make, spatial = CASES[case]
    aux = [*_aux(len(spatial)), LearnedPatches(count=3)]
    dense = GridCollage(make(1), AveragePooler(), aux, contraction=0.9).double()
    s_dep, s_const = dense.num_sources(spatial)
    sparse_op = GridCollage(make(1), AveragePooler(), aux, contraction=0.9, mixing="sparse", sources=s_dep, constants=s_const).double()
    b, c = 2, 3
    shapes = dense.param_shapes(c, spatial)
    g = torch.Generator().manual_seed(case)
    params = CollageParams.from_tensors({k: torch.randn(b, *v, generator=g, dtype=F64) for k, v in shapes.items()})
    w = dense.dependent_weights(params).reshape(-1, s_dep)
    m = w.shape[0]
    code = SparseParams((), torch.arange(s_dep).expand(m, -1).clone(), raw_weights(w, 0.9),
                        torch.arange(s_const).expand(m, -1).clone(), params.aux.reshape(m, -1), params.bias.reshape(m))
    z = signal((b, c, *(s * scale for s in spatial)), seed=10 + case)
    torch.testing.assert_close(sparse_op(z, code, scale), dense(z, params, scale), rtol=0, atol=1e-12)
    torch.testing.assert_close(sparse_op.lipschitz_bound(code), dense.lipschitz_bound(params).max(), rtol=1e-12, atol=0)


def reference_step(collage: GridCollage, code: SparseParams, z: Tensor, spatial: tuple[int, ...], scale: int) -> Tensor:
    """The adaptive step leaf by leaf: each level's sources from a one-level *dense* collage of that
    level's geometry (its domains() and pooler, the auxiliaries' forward()), pasted at the leaf."""
    part = collage.partitioner
    levels, grid, top = part.levels, part.range_grid(spatial), part.range_size(1)
    cells = tree.leaves(code.split, z.shape[0] * z.shape[1], grid, top, levels)
    padded = tuple(g * t for g, t in zip(grid, top))
    out = torch.zeros(z.shape[0] * z.shape[1], *(p * scale for p in padded), dtype=z.dtype)
    w = collage.dependent_weights(code)
    first = 0
    for level, level_cells in enumerate(cells):
        cfg = part.config.model_dump()
        size = tuple(t >> level for t in top)
        cfg.update(range_size=size, levels=1)
        if cfg["domain_size"] != "full":
            cfg["domain_size"] = tuple(d >> level for d in part._domain)
            cfg["domain_stride"] = tuple(s >> level for s in part._stride)
        flat = type(part)(**{k: v for k, v in cfg.items() if k != "name"})
        one = GridCollage(flat, collage.pooler, list(collage.dependent))  # binding learned patches would reset them
        sources = one._pooled(sparse.pad_to(z, tuple(p * scale for p in padded)), scale).flatten(0, 1)  # (p S *r)
        constants = [aux(sources[:1, None], scale)[0, 0] for aux in collage.constant]
        constants = torch.cat(constants) if constants else None
        for i in range(len(level_cells)):
            leaf = first + i
            plane = int(level_cells.plane[i])
            value = code.bias[leaf] + (w[leaf][:, None] * sources[plane, code.index[leaf]].flatten(1)).sum(0)
            if code.aux.shape[1]:
                value = value + (code.aux[leaf][:, None] * constants[code.const_index[leaf]].flatten(1)).sum(0)
            corner = [int(o) * scale for o in level_cells.origin[i]]
            region = (plane, *(slice(o, o + s * scale) for o, s in zip(corner, size)))
            out[region] = value.reshape(*(s * scale for s in size))
        first += len(level_cells)
    crop = (slice(None), *(slice(0, s * scale) for s in spatial))
    return out[crop].reshape(z.shape)


@pytest.mark.parametrize("case", range(len(CASES)), ids=["2d-local", "2d-full", "1d-local"])
@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("sources", [1, 3])
def test_adaptive_step_matches_a_leaf_by_leaf_reference(case: int, scale: int, sources: int) -> None:
    make, spatial = CASES[case]
    aux = [*_aux(len(spatial)), LearnedPatches(count=2)]
    collage = GridCollage(make(3), AveragePooler(), aux, contraction=0.9, mixing="sparse", sources=sources, constants=1).double()
    code = random_sparse(collage, 2, spatial, seed=20 + case)
    assert [len(c) for c in tree.leaves(code.split, 2, collage.partitioner.range_grid(spatial), collage.partitioner.range_size(1), 3)][1] > 0
    z = signal((1, 2, *(s * scale for s in spatial)), seed=30 + case)
    torch.testing.assert_close(collage(z, code, scale), reference_step(collage, code, z, spatial, scale), rtol=0, atol=1e-12)


@pytest.mark.parametrize("magnitude", [0.3, 100.0])
def test_the_bound_holds_and_is_attained(magnitude: float) -> None:
    """sum |w| <= rho for raw weights of any size; |F(z1) - F(z2)| <= bound |z1 - z2| (sup norm), with
    equality for a constant shift when every weight is positive."""
    collage = GridCollage(Tiles(range_size=4, domain_size=8, domain_stride=4, levels=2), AveragePooler(), [Dihedral()],
                          contraction=0.8, mixing="sparse", sources=2).double()
    spatial = (16, 12)
    code = random_sparse(collage, 3, spatial, seed=40, magnitude=magnitude)
    bound = collage.lipschitz_bound(code)
    assert 0 < float(bound) <= 0.8 * (1 + 1e-12)
    step = collage.step_fn(code, spatial)
    for seed in range(3):
        z1 = signal((1, 3, *spatial), seed=50 + seed)
        z2 = z1 + signal((1, 3, *spatial), seed=60 + seed) * 10.0 ** (seed - 1)
        assert float((step(z1) - step(z2)).abs().max()) <= float(bound) * float((z1 - z2).abs().max()) * (1 + 1e-12)
    # Positive weights of the identity (no sign flips): a shift by 1 moves the worst leaf by its sum |w|.
    positive = SparseParams(code.split, code.index % collage.partitioner.domain_blocks(spatial, 1).origins.shape[0] * 0,
                            code.weight.abs() + 0.1, code.const_index, code.aux, code.bias)
    step = collage.step_fn(positive, spatial)
    z = signal((1, 3, *spatial), seed=70)
    torch.testing.assert_close((step(z + 1) - step(z)).abs().max(), collage.lipschitz_bound(positive), rtol=1e-12, atol=1e-12)


def test_fixed_point_matches_the_closed_form() -> None:
    """The step is affine, F(z) = A z + b: build A column by column, solve (I - A) z = b directly, and
    compare with the solver started from the collage's initial state."""
    collage = GridCollage(Segments(range_size=8, domain_size=16, domain_stride=8, levels=3), AveragePooler(), [SignTime()],
                          contraction=0.95, mixing="sparse", sources=2).double()
    spatial = (24,)
    code = random_sparse(collage, 2, spatial, seed=80, magnitude=3.0)
    step = collage.step_fn(code, spatial)
    n = 2 * 24
    b = step(torch.zeros(1, 2, 24, dtype=F64)).reshape(-1)
    a = torch.stack([step(torch.eye(n, dtype=F64)[i].reshape(1, 2, 24)).reshape(-1) - b for i in range(n)], 1)
    exact = torch.linalg.solve(torch.eye(n, dtype=F64) - a, b).reshape(1, 2, 24)
    z, stats = fixed_point(step, collage.initial_state(code, 2, spatial), method="anderson", tol=1e-12, max_iter=500, gradient="none")
    assert stats.converged
    torch.testing.assert_close(z, exact, rtol=0, atol=1e-9)


@pytest.mark.parametrize("scale", [2, 3])
def test_decoding_at_scale_s_averages_down_to_the_scale_1_attractor(scale: int) -> None:
    """Average pooling commutes with the scaled step (cells, domains and permutations all scale by s),
    so the s-times-larger attractor, averaged over s x s blocks, is the scale-1 attractor itself."""
    collage = GridCollage(Tiles(range_size=8, domain_size=16, domain_stride=8, levels=3), AveragePooler(), [Dihedral()],
                          contraction=0.9, mixing="sparse", sources=1).double()
    spatial = (24, 16)
    code = random_sparse(collage, 1, spatial, seed=90)
    solver = Picard(tol=1e-12, max_iter=2000)
    small = decode_grid(collage, code, solver, (1, *spatial), 1, torch.device("cpu"))
    big = decode_grid(collage, code, solver, (1, *spatial), scale, torch.device("cpu"))
    assert big.shape == (1, 1, 24 * scale, 16 * scale)
    torch.testing.assert_close(F.avg_pool2d(big, scale), small, rtol=0, atol=1e-9)


def test_refusals() -> None:
    """Dense mixing with several levels, sparse mixing with cells that are not permutations or a pooler
    that is not block-local, and codes whose indices leave the geometry are clear errors."""
    with pytest.raises(CollagekitError, match="mixing: sparse"):
        GridCollage(Tiles(range_size=4, domain_size=8, levels=2), AveragePooler())

    class Blur(Pooler):
        class Config(ComponentConfig):
            name: str = "blur"

        def forward(self, domains: Tensor, size: tuple[int, ...]) -> Tensor:
            return AveragePooler()(domains, size)

    collage = GridCollage(Tiles(range_size=4, domain_size=8, domain_stride=4), Blur(), mixing="sparse")
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(CollagekitError, match="block-local"):
        collage(x, collage.init_params(x))
    collage = GridCollage(Tiles(range_size=4, domain_size=8, domain_stride=4, levels=2), AveragePooler(), mixing="sparse")
    code = collage.init_params(x)
    code.index[0, 0] = 10**6
    with pytest.raises(CollagekitError, match="outside"):
        collage.step_fn(code, (16, 16))
    code = collage.init_params(x)
    with pytest.raises(CollagekitError, match="layout needs"):
        collage.step_fn(SparseParams((torch.ones(16, dtype=torch.bool),), *list(code.tensors().values())[1:]), (16, 16))


# --------------------------------------------------------------------------- the search

def attractor_of(collage: GridCollage, code: SparseParams, spatial: tuple[int, ...], planes: int) -> Tensor:
    z, _ = fixed_point(collage.step_fn(code, spatial), collage.initial_state(code, planes, spatial), method="picard",
                       tol=1e-13, max_iter=5000, gradient="none")
    return z


@pytest.mark.parametrize("ndim", [1, 2])
def test_search_recovers_a_signal_that_is_an_attractor(ndim: int) -> None:
    """A signal made as the attractor of a one-level sparse code is a fixed point of some code the search
    can express: its collage error is zero, and so is the decode's."""
    if ndim == 2:
        part, spatial = Tiles(range_size=4, domain_size=8, domain_stride=4), (16, 16)
    else:
        part, spatial = Segments(range_size=4, domain_size=8, domain_stride=4), (32,)
    collage = GridCollage(part, AveragePooler(), _aux(ndim), contraction=0.9, mixing="sparse", sources=1).double()
    x = attractor_of(collage, random_sparse(collage, 2, spatial, seed=100), spatial, 2)
    found = search(collage, x, split_tol=1e-9)
    step = collage.step_fn(found, spatial)
    assert float((step(x) - x).abs().max()) < 1e-7  # the least-squares solve's ridge, not a choice
    assert float((attractor_of(collage, found, spatial, 2) - x).abs().max()) < 1e-6


def test_search_respects_the_budget_and_the_tolerance() -> None:
    collage = GridCollage(Tiles(range_size=8, domain_size="full", levels=3), AveragePooler(), [Dihedral()],
                          mixing="sparse", sources=1).double()
    x = signal((1, 2, 32, 24), seed=110).cumsum(-1).cumsum(-2) / 50
    top = math.prod(collage.partitioner.range_grid((32, 24)))
    for budget in (top, top + 9, 40):
        code = search(collage, x, ranges=budget)
        per_plane = tree.leaves(code.split, 2, (4, 3), (8, 8), 3)
        counts = [sum(int((c.plane == p).sum()) for c in per_plane) for p in range(2)]
        assert all(top <= n <= budget for n in counts) and all(budget - n < 3 for n in counts)
    loose, tight = search(collage, x, split_tol=0.5), search(collage, x, split_tol=0.01)
    assert loose.leaves < tight.leaves
    with pytest.raises(CollagekitError, match="budget"):
        search(collage, x, ranges=top - 1)


def test_more_sources_and_more_ranges_fit_better() -> None:
    x = signal((1, 1, 32, 32), seed=120).cumsum(-1).cumsum(-2) / 40
    errors = {}
    for sources in (1, 2):
        collage = GridCollage(Tiles(range_size=8, domain_size=16, domain_stride=8, levels=3), AveragePooler(), [Dihedral()],
                              mixing="sparse", sources=sources).double()
        for budget in (16, 64):
            code = search(collage, x, ranges=budget)
            errors[sources, budget] = float(((collage.step_fn(code, (32, 32))(x) - x) ** 2).sum())
    assert errors[2, 16] < errors[1, 16] and errors[1, 64] < errors[1, 16] and errors[2, 64] < errors[2, 16]


# --------------------------------------------------------------------------- files

def test_sparse_codes_round_trip_through_clg_files(tmp_path: Path) -> None:
    """A sparse code stored by the grid-collage codec (flags and indices range-coded, weights and offsets
    quantised with the header's steps and coded by magnitude class) decodes to the attractor of the
    quantised code, each value within a step; tampering is refused."""
    from collagekit.config import CollageConfig
    from collagekit.gridcodec import WEIGHT_STEP
    from collagekit.recipe import RecipeModels
    from collagekit.registry import get_registry
    from collagekit.sparse import effective_weights

    registry = get_registry()
    config = RecipeModels(registry).specialize(CollageConfig).model_validate({
        "partitioner": {"name": "tiles2d", "range_size": 8, "levels": 3, "domain_size": 16, "domain_stride": 8},
        "auxiliary": [{"name": "dihedral"}], "mixing": "sparse", "sources": 2,
    })
    collage = config.build(registry)
    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(7))
    code = search(collage, x, ranges=30)
    solver = registry.build("solver", registry.get("solver", "picard").Config(tol=1e-6, max_iter=300))
    step = 2.0**-10
    container = GridCollageCodec.pack(modality="image", collage_config=config, collage=collage, params=code, solver=solver,
                                      signal_shape=(3, 24, 20), created_by={}, bias_step=step)
    assert set(container.tensors) == {"params.streams", "params.values"}
    assert container.header["quantiser"] == {"weight": WEIGHT_STEP, "bias": step}
    # Indices and flags cost about log2 of their alphabets: far below the 8 + 1 bytes of int64 and bool;
    # a value about its bit length above the step, far below float16's 2 bytes for weights and offsets.
    assert container.tensors["params.streams"].numel() < code.index.numel() * 2 + sum(s.numel() for s in code.split) // 4 + 64
    assert container.tensors["params.values"].numel() < 1.6 * (code.weight.numel() + code.bias.numel()) + 64
    data = to_bytes(container)
    back_collage, back, back_solver, shape = GridCollageCodec.unpack(from_bytes(data), registry)
    assert torch.equal(back.index, code.index) and all(torch.equal(a, b) for a, b in zip(back.split, code.split))
    w, w_back = effective_weights(code.weight, collage.contraction), effective_weights(back.weight, collage.contraction)
    # Weights on the lattice and inside the ball (rounded down where rounding to nearest would leave it).
    assert float((w_back - w).abs().max()) <= WEIGHT_STEP * 1.01 and float((back.bias - code.bias).abs().max()) <= step / 2 * 1.01
    assert float(w_back.abs().sum(-1).max()) <= collage.contraction + 1e-6
    torch.testing.assert_close(w_back / WEIGHT_STEP, (w_back / WEIGHT_STEP).round())
    cpu = torch.device("cpu")
    exact = decode_grid(collage, code, solver, shape, 1, cpu)
    stored = decode_grid(back_collage, back, back_solver, shape, 1, cpu)
    assert 0 < float((stored - exact).abs().max()) < 0.01  # rounded, but only just
    bad = from_bytes(data)
    bad.tensors["params.values"][len(bad.tensors["params.values"]) // 2] ^= 0x10
    with pytest.raises(CollagekitError, match="corrupt"):
        GridCollageCodec.unpack(bad, registry)
    for entry in ({"weight": WEIGHT_STEP}, {"weight": WEIGHT_STEP, "bias": float("inf")}, {"weight": 0.0, "bias": step}, {"weight": True, "bias": step}):
        bad = from_bytes(data)
        bad.header["quantiser"] = entry
        with pytest.raises(CollagekitError, match="quantiser"):
            GridCollageCodec.unpack(bad, registry)
    bad = from_bytes(data)
    bad.tensors["params.bias"] = torch.zeros(3, dtype=torch.float16)
    with pytest.raises(CollagekitError, match="holds streams, values"):
        GridCollageCodec.unpack(bad, registry)
    with pytest.raises(CollagekitError, match="quantiser step"):
        GridCollageCodec.pack(modality="image", collage_config=config, collage=collage, params=code, solver=solver,
                              signal_shape=(3, 24, 20), created_by={}, bias_step=float("nan"))


def test_flat_signals_store_their_offsets() -> None:
    """A flat signal has RMS 0; the offsets' step still keeps its level (up to twice its peak) storable
    (a white image once reached 'too large to store'), and the offsets refitted to the weights' lattice
    keep it exact (without the refit a weight near rho moved -0.9 to -0.886)."""
    from collagekit.config import CollageConfig
    from collagekit.gridcodec import bias_step_for, on_lattice
    from collagekit.recipe import RecipeModels
    from collagekit.registry import get_registry

    registry = get_registry()
    config = RecipeModels(registry).specialize(CollageConfig).model_validate({
        "partitioner": {"name": "tiles2d", "range_size": 8, "levels": 2, "domain_size": 16, "domain_stride": 8},
        "mixing": "sparse", "sources": 1,
    })
    collage = config.build(registry)
    solver = registry.build("solver", registry.get("solver", "picard").Config(tol=1e-7, max_iter=300))
    for level in (1.0, -0.9, 0.0):
        x = torch.full((1, 1, 16, 16), level)
        code = on_lattice(collage, search(collage, x, ranges=8), x)
        container = GridCollageCodec.pack(modality="image", collage_config=config, collage=collage, params=code, solver=solver,
                                          signal_shape=(1, 16, 16), created_by={}, bias_step=bias_step_for(x))
        back_collage, back, back_solver, shape = GridCollageCodec.unpack(from_bytes(to_bytes(container)), registry)
        decoded = decode_grid(back_collage, back, back_solver, shape, 1, torch.device("cpu"))
        assert float((decoded - x).abs().max()) < 1e-4, level


def test_two_stage_row_minimum_matches_min() -> None:
    torch.manual_seed(2)
    for m in (5, 16 * 31 + 15, 16 * 32, 16 * 40 + 15, 4099):
        err = torch.randn(9, m)
        value, index = row_min(err)
        assert torch.equal(value, err.min(1).values), m
        assert torch.equal(err.gather(1, index[:, None])[:, 0], value), m
