"""Fixed-point solvers: closed-form oracle, Anderson vs Picard, gradient modes, stopping, devices.

Everything here is small and seeded (float64 where an exact comparison is made), so the file runs in
about a second on a laptop CPU.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

import pytest
import torch
from collage_fixtures import F64, Segments, Tiles, _one_thread, random_params  # noqa: F401 - _one_thread is an autouse fixture
from collagekit_image.components import Dihedral
from torch import Tensor

from collagekit.grid import AveragePooler, LearnedPatches
from collagekit.operator import CollageParams, GridCollage
from collagekit.solver import fixed_point, iterate


class Counter:
    """Wraps a step and counts its evaluations; also records the sup residual of each evaluation."""

    def __init__(self, step: Callable[[Tensor], Tensor]) -> None:
        self.step = step
        self.calls = 0
        self.residuals: list[float] = []

    def __call__(self, z: Tensor) -> Tensor:
        self.calls += 1
        fz = self.step(z)
        self.residuals.append(float((fz - z).detach().abs().max()))
        return fz


def linear_contraction(n: int, rho: float, seed: int, kind: str = "signed") -> tuple[Tensor, Tensor]:
    """A random ``(A, b)`` in float64 with ``||A||_inf = rho``.

    ``signed``: Gaussian entries scaled so the largest absolute row sum is ``rho`` (spectral radius
    usually far below ``rho``). ``positive``: nonnegative rows each summing to ``rho``, so the spectral
    radius *is* ``rho`` (the regime of a collage whose weights sit at the bound).
    """
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=F64)
    if kind == "positive":
        A = A.abs()
        A = rho * A / A.sum(1, keepdim=True)
    else:
        A = rho * A / A.abs().sum(1).max()
    b = torch.randn(n, generator=g, dtype=F64)
    return A, b


def linear_step(A: Tensor, b: Tensor) -> Callable[[Tensor], Tensor]:
    """z (batch n) -> A z + b."""
    return lambda z: z @ A.T + b


def starts(n: int, seed: int) -> Tensor:
    """(3 n): zeros, Gaussian noise and a large constant as three starting points."""
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.stack([torch.zeros(n, dtype=F64), torch.randn(n, generator=g, dtype=F64), torch.full((n,), 50.0, dtype=F64)])


def collage_2d(contraction: float = 0.9, learned: int = 2) -> GridCollage:
    """8x8 images, 2x2 ranges, 4x4 domains, dihedral cells and ``learned`` learned patches, in float64."""
    aux = [Dihedral(), *([LearnedPatches(count=learned, init_std=0.5)] if learned else [])]
    return GridCollage(Tiles(range_size=2, domain_size=4), AveragePooler(), aux, contraction=contraction).double()


def collage_1d(contraction: float = 0.9, learned: int = 2) -> GridCollage:
    """Length-14 signals (padded to 16), 2-sample ranges, 4-sample domains with stride 2, in float64."""
    aux = [LearnedPatches(count=learned, init_std=0.5)] if learned else []
    partitioner = Segments(range_size=2, domain_size=4, domain_stride=2)
    return GridCollage(partitioner, AveragePooler(), aux, contraction=contraction).double()


# --------------------------------------------------------------------------- forward solves


@pytest.mark.parametrize("method", ["picard", "anderson"])
@pytest.mark.parametrize("kind", ["signed", "positive"])
def test_fixed_point_matches_closed_form(method: str, kind: str) -> None:
    """The solver's fixed point of z -> A z + b equals (I - A)^{-1} b from a dense solve, from any start."""
    n = 24
    A, b = linear_contraction(n, 0.9, seed=3, kind=kind)
    exact = torch.linalg.solve(torch.eye(n, dtype=F64) - A, b)
    z, stats = fixed_point(linear_step(A, b), starts(n, 3), method=method, tol=1e-13, max_iter=5000, gradient="none")
    assert stats.converged
    torch.testing.assert_close(z, exact.expand(3, n), rtol=0, atol=1e-11)


CONTRACTIONS = [0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99]


@pytest.mark.parametrize("kind", ["signed", "positive"])
def test_anderson_never_needs_more_evaluations_than_picard(kind: str) -> None:
    """Across contraction strengths 0.1 .. 0.99 and seeds, Anderson uses <= Picard's operator evaluations.

    Evaluations are counted by wrapping the step, and must equal ``stats.iterations``.
    """
    n = 32
    for rho in CONTRACTIONS:
        for seed in range(4):
            A, b = linear_contraction(n, rho, seed, kind)
            counts = {}
            for method in ("picard", "anderson"):
                counter = Counter(linear_step(A, b))
                _, stats = fixed_point(counter, starts(n, seed), method=method, tol=1e-10, max_iter=10_000, gradient="none")
                assert stats.converged, (method, rho, seed)
                assert counter.calls == stats.iterations
                counts[method] = stats.iterations
            assert counts["anderson"] <= counts["picard"], (rho, seed, counts)


def test_anderson_far_faster_near_the_bound_linear() -> None:
    """On a linear map whose spectral radius is 0.99, Anderson needs at most a third of Picard's evaluations."""
    n = 32
    for seed in range(3):
        A, b = linear_contraction(n, 0.99, seed, "positive")
        counts = {}
        for method in ("picard", "anderson"):
            counter = Counter(linear_step(A, b))
            _, stats = fixed_point(counter, starts(n, seed), method=method, tol=1e-8, max_iter=10_000, gradient="none")
            assert stats.converged and counter.calls == stats.iterations
            counts[method] = counter.calls
        assert 3 * counts["anderson"] <= counts["picard"], counts


@pytest.mark.parametrize("make", [collage_1d, collage_2d], ids=["1d", "2d"])
def test_anderson_far_faster_near_the_bound_collage(make: Callable[..., GridCollage]) -> None:
    """The real GridCollage with tanh(scale) ~ 1 (weights at the 0.99 bound): Anderson <= Picard / 3,
    and the two reach the same fixed point."""
    collage = make(contraction=0.99)
    spatial = (14,) if make is collage_1d else (8, 8)
    params = random_params(collage, 2, 2, spatial, seed=0, scale_shift=12.0)
    assert float(collage.lipschitz_bound(params).min()) > 0.98  # really near the bound
    step = collage.step_fn(params, spatial)
    z0 = torch.zeros(2, 2, *spatial, dtype=F64)
    counts, sols = {}, {}
    for method in ("picard", "anderson"):
        counter = Counter(step)
        sols[method], stats = fixed_point(counter, z0, method=method, tol=1e-7, max_iter=10_000, gradient="none")
        assert stats.converged and counter.calls == stats.iterations
        counts[method] = counter.calls
    assert 3 * counts["anderson"] <= counts["picard"], counts
    # Residual 1e-7 at Lipschitz 0.99 means an error below 1e-7 / (1 - 0.99) = 1e-5 for each.
    torch.testing.assert_close(sols["anderson"], sols["picard"], rtol=0, atol=2e-5)


@pytest.mark.parametrize("make", [collage_1d, collage_2d], ids=["1d", "2d"])
def test_anderson_no_slower_than_picard_on_collages(make: Callable[..., GridCollage]) -> None:
    """On GridCollages of moderate to near-bound strength, Anderson never needs more evaluations."""
    spatial = (14,) if make is collage_1d else (8, 8)
    for contraction in (0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99):
        collage = make(contraction=contraction)
        for seed in range(2):
            params = random_params(collage, 2, 1, spatial, seed=seed, scale_shift=2.0)
            counts = {}
            for method in ("picard", "anderson"):
                counter = Counter(collage.step_fn(params, spatial))
                _, stats = fixed_point(counter, torch.zeros(2, 1, *spatial, dtype=F64), method=method, tol=1e-9,
                                       max_iter=10_000, gradient="none")
                assert stats.converged and counter.calls == stats.iterations
                counts[method] = counter.calls
            assert counts["anderson"] <= counts["picard"], (contraction, seed, counts)


@pytest.mark.parametrize("method", ["picard", "anderson"])
def test_iterate_stops_at_max_iter_when_tol_unreachable(method: str) -> None:
    """An unreachable tol: exactly max_iter evaluations, converged False, one residual per evaluation,
    and each recorded residual is that evaluation's max |F(z) - z|."""
    A, b = linear_contraction(16, 0.99, seed=0, kind="positive")
    counter = Counter(linear_step(A, b))
    z, stats = iterate(counter, starts(16, 0), method=method, tol=1e-300, max_iter=7)
    assert not stats.converged
    assert stats.iterations == counter.calls == 7
    assert len(stats.residuals) == 7
    assert stats.residuals == pytest.approx(counter.residuals, rel=1e-12)
    assert stats.residual == stats.residuals[-1] > 1e-300
    assert z.shape == (3, 16) and torch.isfinite(z).all()


@pytest.mark.parametrize("method", ["picard", "anderson"])
def test_iterate_records_one_residual_per_evaluation_when_converging(method: str) -> None:
    """A reachable tol: stops at the first evaluation whose residual is <= tol, one residual each."""
    A, b = linear_contraction(16, 0.8, seed=1, kind="positive")
    counter = Counter(linear_step(A, b))
    _, stats = iterate(counter, starts(16, 1), method=method, tol=1e-9, max_iter=1000)
    assert stats.converged
    assert stats.iterations == counter.calls == len(stats.residuals)
    assert stats.residuals == pytest.approx(counter.residuals, rel=1e-12)
    assert stats.residuals[-1] <= 1e-9 < min(stats.residuals[:-1])


def test_anderson_handles_signals_already_at_their_fixed_point() -> None:
    """A batch where one signal's map is constant (its residual is exactly zero from the second
    evaluation on, as for collage tiles with no domain weight) and another's is a slow contraction:
    the zero rows must not make the mixing system singular, and each converges to its own point."""
    A, b = linear_contraction(16, 0.95, seed=3, kind="signed")
    constant = torch.linspace(-1, 1, 16, dtype=F64)

    def step(z: Tensor) -> Tensor:
        return torch.stack([constant, linear_step(A, b)(z[1:])[0]])

    z, stats = iterate(step, torch.zeros(2, 16, dtype=F64), method="anderson", tol=1e-10, max_iter=500)
    assert stats.converged
    assert torch.equal(z[0], constant)
    expected = torch.linalg.solve(torch.eye(16, dtype=F64) - A, b)
    assert torch.allclose(z[1], expected, atol=1e-8)


def test_picard_residual_shrinks_by_the_contraction_factor() -> None:
    """For a sup-norm contraction with constant rho, each Picard residual is <= rho times the previous."""
    rho = 0.8
    A, b = linear_contraction(16, rho, seed=2, kind="signed")
    _, stats = iterate(linear_step(A, b), starts(16, 2), method="picard", tol=1e-12, max_iter=1000)
    res = stats.residuals
    assert all(r1 <= rho * r0 * (1 + 1e-9) for r0, r1 in zip(res, res[1:]))


def test_max_iter_must_be_positive() -> None:
    """max_iter < 1 is an error, not a silent no-op."""
    with pytest.raises(ValueError, match="max_iter"):
        iterate(lambda z: z, torch.zeros(1, 2), max_iter=0)


# --------------------------------------------------------------------------- gradients


def _leaves(collage: GridCollage, params: CollageParams) -> dict[str, Tensor]:
    return {**params.tensors(), "patches": collage.constant[0].patches}


def _grads(collage: GridCollage, params: CollageParams, spatial: tuple[int, ...], target: Tensor,
           **solve) -> dict[str, Tensor]:
    """Gradients of mean((z* - target)^2) w.r.t. every collage parameter and the learned patches."""
    params = params.map(lambda t: t.detach().clone().requires_grad_())
    collage.zero_grad(set_to_none=True)
    z, _ = fixed_point(collage.step_fn(params, spatial), torch.zeros_like(target), **solve)
    torch.mean((z - target) ** 2).backward()
    return {k: v.grad.detach().clone() for k, v in _leaves(collage, params).items()}


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("make", [collage_1d, collage_2d], ids=["1d", "2d"])
@pytest.mark.parametrize("method", ["picard", "anderson"])
def test_implicit_gradients_match_unrolled(make: Callable[..., GridCollage], method: str) -> None:
    """Implicit differentiation (adjoint fixed point) matches autograd through a fully converged Picard
    unroll to relative error <= 1e-4 for scale, mix, aux, bias and the learned patches."""
    collage = make(contraction=0.9)
    spatial = (14,) if make is collage_1d else (8, 8)
    params = random_params(collage, 2, 2, spatial, seed=4, scale_shift=0.5)
    target = torch.randn(2, 2, *spatial, generator=torch.Generator().manual_seed(5), dtype=F64)
    ref = _grads(collage, params, spatial, target, method="picard", gradient="unrolled", tol=1e-12, max_iter=5000)
    got = _grads(collage, params, spatial, target, method=method, gradient="implicit", tol=1e-12,
                 backward_tol=1e-13, max_iter=5000)
    for name in ref:
        assert ref[name].norm() > 0, name
        assert _rel(got[name], ref[name]) <= 1e-4, (name, _rel(got[name], ref[name]))
    # The test has teeth: cutting the adjoint solve to a single iteration is far off.
    naive = _grads(collage, params, spatial, target, method=method, gradient="implicit", tol=1e-12,
                   backward_max_iter=1, max_iter=5000)
    assert max(_rel(naive[k], ref[k]) for k in ref) > 1e-2


def test_implicit_gradient_matches_closed_form_and_survives_retain_graph() -> None:
    """For z* = (I - A)^{-1} b, dL/db = (I - A)^{-T} dL/dz*; a second backward (retain_graph) agrees too."""
    n = 12
    A, b = linear_contraction(n, 0.95, seed=6, kind="positive")
    b = b.requires_grad_()
    w = torch.randn(n, generator=torch.Generator().manual_seed(7), dtype=F64)
    z, _ = fixed_point(linear_step(A, b), torch.zeros(1, n, dtype=F64), tol=1e-13, gradient="implicit")
    loss = (w * z).sum()
    exact = torch.linalg.solve((torch.eye(n, dtype=F64) - A).T, w)
    first = torch.autograd.grad(loss, b, retain_graph=True)[0]
    second = torch.autograd.grad(loss, b)[0]
    torch.testing.assert_close(first, exact, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(second, exact, rtol=1e-9, atol=1e-12)


def test_phantom_gradients_are_finite_and_point_the_right_way() -> None:
    """Phantom gradients are inexact by design: just finite, nonzero and aligned with the exact gradient."""
    collage = collage_2d(contraction=0.9)
    spatial = (8, 8)
    params = random_params(collage, 2, 1, spatial, seed=8, scale_shift=0.5)
    target = torch.randn(2, 1, *spatial, generator=torch.Generator().manual_seed(9), dtype=F64)
    exact = _grads(collage, params, spatial, target, gradient="implicit", tol=1e-10)
    phantom = _grads(collage, params, spatial, target, gradient="phantom", tol=1e-10)
    for name, g in phantom.items():
        assert g.shape == exact[name].shape
        assert torch.isfinite(g).all() and g.norm() > 0, name
        cosine = float((g * exact[name]).sum() / (g.norm() * exact[name].norm()))
        assert cosine > 0.5, (name, cosine)


def _graph_size(t: Tensor) -> int:
    """Number of autograd nodes reachable from ``t.grad_fn``."""
    seen: dict[int, object] = {}  # keeps the Python node wrappers alive so their ids stay unique
    stack = [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(fn for fn, _ in node.next_functions)
    return len(seen)


@pytest.mark.parametrize("method", ["picard", "anderson"])
def test_implicit_graph_does_not_grow_with_iterations(method: str) -> None:
    """Implicit mode keeps one step's graph whatever the iteration count; unrolled mode's graph grows."""
    collage = collage_1d(contraction=0.99)
    spatial = (14,)
    params = random_params(collage, 1, 1, spatial, seed=10, scale_shift=12.0).map(lambda t: t.requires_grad_())
    z0 = torch.zeros(1, 1, *spatial, dtype=F64)
    sizes = {}
    for gradient in ("implicit", "unrolled"):
        for max_iter in (5, 200):
            z, stats = fixed_point(collage.step_fn(params, spatial), z0, method=method, tol=1e-300,
                                   max_iter=max_iter, gradient=gradient)
            # tol=1e-300 is below float64's rounding floor, so Anderson may stop there; it still runs
            # far more than 5 evaluations, which is all this test needs.
            assert z.requires_grad and (stats.iterations == max_iter or stats.iterations > 10)
            sizes[gradient, max_iter] = _graph_size(z)
    assert sizes["implicit", 5] == sizes["implicit", 200]
    assert sizes["unrolled", 5] > sizes["implicit", 5]
    assert sizes["unrolled", 200] > 3 * sizes["unrolled", 5]  # grows with the evaluations (>= 17 vs 5)


@pytest.mark.parametrize("gradient", ["implicit", "phantom", "unrolled"])
def test_solution_and_graph_freed_without_the_cyclic_collector(gradient: str) -> None:
    """Once the caller drops the solution, its graph (every saved feature map) must go at once, by
    reference counting: a reference cycle would hold it until Python's cyclic collector happens to run,
    which in a training loop is seldom enough for memory to grow by gigabytes."""
    collage = collage_1d()
    params = random_params(collage, 1, 1, (14,), seed=12).map(lambda t: t.requires_grad_())
    gc.disable()
    try:
        z, _ = fixed_point(collage.step_fn(params, (14,)), torch.zeros(1, 1, 14, dtype=F64), gradient=gradient)
        z.sum().backward()
        solution = weakref.ref(z)
        del z
        assert solution() is None
    finally:
        gc.enable()


def test_no_graph_when_gradient_none() -> None:
    """gradient='none' returns a tensor without autograd history even if the parameters need grad."""
    collage = collage_1d()
    params = random_params(collage, 1, 1, (14,), seed=11).map(lambda t: t.requires_grad_())
    z, _ = fixed_point(collage.step_fn(params, (14,)), torch.zeros(1, 1, 14, dtype=F64), gradient="none")
    assert not z.requires_grad


# --------------------------------------------------------------------------- devices


def test_device_auto_follows_cuda_availability() -> None:
    """device='auto' solves on CUDA when there is one, otherwise on the CPU."""
    A, b = linear_contraction(8, 0.5, seed=12)
    want = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    A, b = A.to(want), b.to(want)
    z, _ = fixed_point(linear_step(A, b), torch.zeros(1, 8, dtype=F64), device="auto", gradient="none")
    assert z.device.type == want.type


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["picard", "anderson"])
def test_cuda_fixed_point_matches_cpu(method: str) -> None:
    """The GridCollage fixed point computed on CUDA equals the CPU one (float64, tight tolerance)."""
    collage = collage_2d(contraction=0.95)
    spatial = (8, 8)
    params = random_params(collage, 2, 2, spatial, seed=13, scale_shift=2.0)
    z0 = torch.zeros(2, 2, *spatial, dtype=F64)
    cpu, _ = fixed_point(collage.step_fn(params, spatial), z0, method=method, tol=1e-12, gradient="none")
    collage_gpu = collage.to("cuda")
    params_gpu = params.map(lambda t: t.to("cuda"))
    gpu, stats = fixed_point(collage_gpu.step_fn(params_gpu, spatial), z0, method=method, tol=1e-12,
                             gradient="none", device="cuda")
    assert gpu.device.type == "cuda" and stats.converged
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-10)


@pytest.mark.gpu
def test_cuda_auto_device_puts_result_on_cuda() -> None:
    """fixed_point(..., device='auto') moves a CPU start onto CUDA when CUDA is available."""
    A, b = linear_contraction(8, 0.9, seed=14)
    A, b = A.cuda(), b.cuda()
    z, stats = fixed_point(linear_step(A, b), torch.zeros(2, 8, dtype=F64), device="auto", tol=1e-12, gradient="none")
    assert z.device.type == "cuda" and stats.converged
    exact = torch.linalg.solve(torch.eye(8, dtype=F64) - A.cpu(), b.cpu())
    torch.testing.assert_close(z.cpu(), exact.expand(2, 8), rtol=0, atol=1e-10)
