"""Fixed-point solvers for ``z = F(z)``, with the gradient modes training needs.

Forward methods: Picard iteration and Anderson acceleration (Walker & Ni 2011; the bordered
least-squares form used by deep-equilibrium models), both batched, both stopping on a sup-norm
residual ``max |F(z) - z| <= tol`` per signal or after ``max_iter`` evaluations of ``F``.

Gradient modes:
- ``unrolled``: autograd through every iteration (memory grows with the iteration count).
- ``implicit``: solve without a graph, then differentiate the fixed-point equation: the backward pass
  solves the adjoint fixed point ``g = J^T g + grad`` with the same method. Memory is one step's graph.
- ``phantom``: a few damped steps from the solution carry the gradient (Geng et al. 2021): cheap, inexact.
- ``none``: no graph at all (decoding).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor

from collagekit.config import AndersonConfig, Gradient, PicardConfig
from collagekit.device import resolve_device
from collagekit.interfaces import Component

Method = Literal["picard", "anderson"]
StepFn = Callable[[Tensor], Tensor]


@dataclass
class SolverStats:
    """What a solve did: operator evaluations, the worst residual after each, and whether it met tol."""

    iterations: int = 0
    residuals: list[float] = field(default_factory=list)
    converged: bool = False
    backward: SolverStats | None = None

    @property
    def residual(self) -> float:
        return self.residuals[-1] if self.residuals else float("inf")


def _sup_residual(fz: Tensor, z: Tensor) -> Tensor:
    """(b ...) , (b ...) -> (b,): max |F(z) - z| per signal (detached: it only decides when to stop)."""
    return (fz.detach() - z.detach()).abs().flatten(1).amax(-1)


def _evaluate(step: StepFn, x: Tensor, stats: SolverStats, tol: float) -> tuple[Tensor, bool]:
    """One evaluation of F, recorded in ``stats``; True when every signal's residual meets the tolerance.

    The tolerance never asks for less than the floating-point spacing at the solution's magnitude
    (a few ulps): below that no method can make progress, and asking would only burn ``max_iter``.
    """
    fx = step(x)
    residual = float(_sup_residual(fx, x).max())
    stats.iterations += 1
    stats.residuals.append(residual)
    floor = 8 * torch.finfo(fx.dtype).eps * float(fx.detach().abs().max()) if fx.dtype.is_floating_point else 0.0
    stats.converged = residual <= max(tol, floor)
    return fx, stats.converged


def _picard(step: StepFn, z0: Tensor, tol: float, max_iter: int) -> tuple[Tensor, SolverStats]:
    stats = SolverStats()
    z = z0
    for _ in range(max_iter):
        z, done = _evaluate(step, z, stats, tol)
        if done:
            break
    return z, stats


def _anderson(
    step: StepFn, z0: Tensor, tol: float, max_iter: int, memory: int, beta: float, lam: float
) -> tuple[Tensor, SolverStats]:
    """Anderson acceleration with ``memory`` past iterates.

    Each step mixes the last m images ``F(x_i)`` with weights alpha (sum 1) that minimise the norm of the
    mixed residual ``sum_i alpha_i (F(x_i) - x_i)``; the small bordered system is solved in float64.
    Histories are Python lists (not preallocated buffers) so unrolled autograd can run through them.
    """
    stats = SolverStats()
    b = z0.shape[0]
    xs: list[Tensor] = []
    fs: list[Tensor] = []
    x = z0
    last = z0
    for _ in range(max_iter):
        fx, done = _evaluate(step, x, stats, tol)
        last = fx
        if done:
            break
        xs.append(x.reshape(b, -1))
        fs.append(fx.reshape(b, -1))
        xs, fs = xs[-memory:], fs[-memory:]
        n = len(xs)
        if n == 1:
            x = fx  # the first step is a plain Picard step
            continue
        X = torch.stack(xs, 1)  # b n m
        F = torch.stack(fs, 1)  # b n m
        G = (F - X).double()
        gram = G @ G.transpose(1, 2)  # b n n
        # Regularise relative to the *smallest* residual in memory so the system stays well posed near
        # convergence without biasing the mix: with reg = lam * min |r_i|^2 the mixed residual is never
        # more than sqrt(1 + lam) times the best one in memory. (Scaling by the mean let the old, large
        # residuals swamp the newest, tiny ones: on weak contractions Anderson then needed more
        # evaluations than Picard.)
        reg = lam * gram.diagonal(dim1=1, dim2=2).amin(-1).clamp_min(1e-300)
        eye = torch.eye(n, dtype=gram.dtype, device=gram.device)
        H = torch.zeros(b, n + 1, n + 1, dtype=gram.dtype, device=gram.device)
        H[:, 0, 1:] = 1.0
        H[:, 1:, 0] = 1.0
        H[:, 1:, 1:] = gram + reg[:, None, None] * eye
        rhs = torch.zeros(b, n + 1, 1, dtype=gram.dtype, device=gram.device)
        rhs[:, 0] = 1.0
        solution, info = torch.linalg.solve_ex(H, rhs)
        alpha = solution[:, 1:, 0]  # b n
        # Signals whose system is singular (in a batch, those already exactly at their fixed point: zero
        # residual rows) take a plain Picard step (all weight on the newest iterate) instead.
        failed = (info != 0) | ~torch.isfinite(alpha).all(-1)
        if failed.any():
            picard = torch.zeros_like(alpha)
            picard[:, -1] = 1.0
            alpha = torch.where(failed[:, None], picard, alpha)
        alpha = alpha.to(F.dtype)
        mixed_f = torch.einsum("bn,bnm->bm", alpha, F)
        if beta != 1.0:
            mixed_f = beta * mixed_f + (1.0 - beta) * torch.einsum("bn,bnm->bm", alpha, X)
        x = mixed_f.reshape(z0.shape)
    return last, stats


def iterate(
    step: StepFn,
    z0: Tensor,
    *,
    method: Method = "anderson",
    tol: float = 1e-4,
    max_iter: int = 200,
    memory: int = 5,
    beta: float = 1.0,
    lam: float = 1e-6,
) -> tuple[Tensor, SolverStats]:
    """Run the forward iteration only (autograd records it if grad is enabled)."""
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    if method == "picard":
        return _picard(step, z0, tol, max_iter)
    if method == "anderson":
        return _anderson(step, z0, tol, max_iter, memory, beta, lam)
    raise ValueError(f"unknown fixed-point method {method!r}; choose 'picard' or 'anderson'")


def fixed_point(
    step: StepFn,
    z0: Tensor,
    *,
    method: Method = "anderson",
    tol: float = 1e-4,
    max_iter: int = 200,
    memory: int = 5,
    beta: float = 1.0,
    lam: float = 1e-6,
    gradient: Gradient = "implicit",
    backward_tol: float | None = None,
    backward_max_iter: int | None = None,
    phantom_steps: int = 5,
    phantom_damping: float = 0.5,
    device: str | torch.device | None = None,
) -> tuple[Tensor, SolverStats]:
    """Solve ``z = step(z)`` from ``z0`` (b ...), returning the solution and :class:`SolverStats`.

    ``device``: ``None`` keeps ``z0`` where it is; ``"auto"`` picks CUDA when available. ``step`` must
    accept tensors on that device. Gradients flow to whatever ``step`` closes over, per ``gradient``.
    """
    if device is not None:
        z0 = z0.to(resolve_device(device))
    solve = dict(method=method, tol=tol, max_iter=max_iter, memory=memory, beta=beta, lam=lam)
    if gradient == "none" or not torch.is_grad_enabled():
        with torch.no_grad():
            return iterate(step, z0, **solve)
    if gradient == "unrolled":
        return iterate(step, z0, **solve)
    with torch.no_grad():
        z_star, stats = iterate(step, z0.detach(), **solve)
    if gradient == "phantom":
        z = z_star
        for _ in range(phantom_steps):
            z = (1.0 - phantom_damping) * z + phantom_damping * step(z)
        return z, stats
    if gradient != "implicit":
        raise ValueError(f"unknown gradient mode {gradient!r}")

    z_in = z_star.detach().requires_grad_()
    z_out = step(z_in)  # one step with a graph: dz*/dtheta flows through it
    adjoint = dict(solve, tol=backward_tol if backward_tol is not None else tol * 1e-2,
                   max_iter=backward_max_iter if backward_max_iter is not None else max_iter)

    def solve_adjoint(grad: Tensor) -> Tensor:
        # g = J^T g + grad, J = dF/dz at z*: the implicit-function-theorem gradient. The VJPs run on a
        # one-step graph of their own, rebuilt here from z*: closing over z_out instead would make a
        # reference cycle (z_out -> its hook -> z_out) that keeps every solve's graph, saved feature maps
        # and all, alive until Python's cyclic collector happens to run (gigabytes in a training run).
        # The hook stays registered, so a second backward (retain_graph=True) is implicit too.
        with torch.enable_grad():
            z_at = z_star.detach().requires_grad_()
            f_at = step(z_at)

        def vjp(g: Tensor) -> Tensor:
            return torch.autograd.grad(f_at, z_at, g, retain_graph=True)[0] + grad

        with torch.enable_grad():
            g, stats.backward = iterate(vjp, grad, **adjoint)
        return g

    z_out.register_hook(solve_adjoint)
    return z_out, stats


class Solver(Component):
    """A registered fixed-point solver: the settings of :func:`fixed_point`, bound from a recipe."""

    kind: ClassVar[str] = "solver"
    method: ClassVar[Method]

    def options(self) -> dict:
        cfg = self.config.model_dump(exclude={"name"})
        return dict(method=self.method, **cfg)

    def __call__(self, step: StepFn, z0: Tensor, **overrides) -> tuple[Tensor, SolverStats]:
        return fixed_point(step, z0, **{**self.options(), **overrides})


class Picard(Solver):
    Config = PicardConfig

    method: ClassVar[Method] = "picard"


class Anderson(Solver):
    Config = AndersonConfig

    method: ClassVar[Method] = "anderson"
