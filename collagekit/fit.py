"""Per-datum fitting: find one signal's collage parameters by gradient descent.

A warm-up on the one-step collage loss ``|x - F(x)|^2`` (cheap, and by the Collage theorem an upper
bound on the fixed-point error up to 1/(1 - rho)), then the fixed-point loss ``|x - z*(w)|^2`` with
gradients through the solver (implicit differentiation by default). Learned auxiliary patches in the
operator are fitted too. A sparse code keeps its layout and sources (integers); its weights, biases and
constant-cell weights are fitted.

With a :class:`~collagekit.search.Quantiser` (a sparse code a file stores on lattices: a codec's) every
step evaluates the code the file would hold: effective weights and biases rounded to their lattices
straight-through (the loss of the rounded code, the gradient as if unrounded), weights kept inside the
contraction ball by the raw parametrisation, and a weight that is 0 at the start stays 0 (its range names
no source). Adam would move every value by about its learning rate at each step (after a few steps
every bias would cross to the next lattice point at once); instead each value steps along its gradient
scaled by the inverse Gauss-Newton diagonal of one step of the map (``lr`` 1: each value's own Newton
step), from the best code so far, halved after a step that made the loss worse and doubled after one too
short to move any value to another lattice point. The result is the evaluated (rounded) code of least
fixed-point loss, the start included: the steps never return a worse decode than they began with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor

from collagekit import sparse
from collagekit.config import FitConfig
from collagekit.errors import CollagekitError
from collagekit.interfaces import Encoder
from collagekit.operator import CollageParams, GridCollage
from collagekit.progress import progress_bar
from collagekit.solver import Solver
from collagekit.sparse import SparseParams

if TYPE_CHECKING:
    from collagekit.search import Quantiser  # search imports this module

Code = TypeVar("Code", CollageParams, SparseParams)


@dataclass(frozen=True)
class FitSettings:
    steps: int
    collage_steps: int
    lr: float


def _storable(params: SparseParams, quantiser: Quantiser, contraction: float, named: Tensor) -> SparseParams:
    """The code a file stores: effective weights (zero where ``named`` (m j) is False) and biases rounded
    to their lattices, straight-through (values rounded, gradients as if not)."""
    w = sparse.effective_weights(params.weight, contraction) * named
    w = w + (quantiser.weights(w, contraction) - w).detach()
    b = params.bias + (quantiser.bias(params.bias) - params.bias).detach()
    return SparseParams(params.split, params.index, sparse.raw_weights(w, contraction), params.const_index, params.aux, b, _plans=params._plans)


def _curvature(x: Tensor, collage: GridCollage, code: SparseParams, spatial: tuple[int, ...], scale: int) -> tuple[Tensor, Tensor]:
    """The Gauss-Newton diagonal of the one-step map ``F`` at x: ``sum_n (dF_n / dtheta)^2`` for every raw
    weight (m j) and bias (m,). Every sample depends on one leaf only, so it is the gradient of
    ``|F|^2 / 2`` for a code whose raw weight is 1/2 on the one slot asked (F linear in it, inside the
    ball) and 0 elsewhere: ``rho^2 / 2 sum S^2`` per weight; with bias 1 and no weights: samples per leaf."""

    def grad(weight: Tensor, bias: Tensor, wrt: str) -> Tensor:
        probe = SparseParams(code.split, code.index, weight, code.const_index, code.aux, bias, _plans=code._plans)
        leaf = getattr(probe, wrt).requires_grad_()
        (collage.step_fn(probe, spatial, scale)(x) ** 2).sum().div(2).backward()
        return leaf.grad

    zero_w, zero_b = torch.zeros_like(code.weight), torch.zeros_like(code.bias)
    bias = grad(zero_w, torch.ones_like(code.bias), "bias")
    weight = torch.zeros_like(code.weight)
    for slot in range(code.weight.shape[-1]):
        probe = zero_w.clone()
        probe[:, slot] = 0.5
        weight[:, slot] = 2 * grad(probe, zero_b, "weight")[:, slot]
    return weight, bias


def refine(
    x: Tensor, collage: GridCollage, solver: Solver, start: Code, settings: FitSettings, quantiser: Quantiser | None = None, scale: int = 1
) -> tuple[Code, list[float]]:
    """Gradient steps from ``start`` (collage loss, then fixed-point loss) -> (detached code, loss of every
    evaluated code). x: (b c *spatial), the target at ``scale`` (the code's signal is ``spatial / scale``:
    a code decoded larger than it was searched at is refined as it will be decoded). With ``quantiser``
    (a sparse code on lattices, no constant cells, fixed-point steps only): see the module docstring."""
    spatial = tuple(s // scale for s in x.shape[2:])
    total = settings.collage_steps + settings.steps
    history: list[float] = []
    if total == 0:
        return start, history
    params = start.map(lambda t: t.clone().requires_grad_() if t.is_floating_point() else t)
    if quantiser is None:
        optimiser = torch.optim.Adam([*(t for t in params if t.requires_grad), *collage.parameters()], lr=settings.lr)
    else:
        if not isinstance(params, SparseParams) or params.aux.shape[-1] or settings.collage_steps:
            raise CollagekitError("a quantised refinement takes fixed-point steps on a sparse code without constant cells")
        named = start.weight != 0
        values = (params.weight, params.bias)
        newton = [x.numel() / 2 / c.clamp_min(1e-6) for c in _curvature(x.detach(), collage, start, spatial, scale)]
        best: Code = start
        least, rate = math.inf, settings.lr
    z = x.detach()
    evaluations = total + (quantiser is not None)  # a quantised run also scores what its last step made
    with progress_bar("fitting", total) as bar:
        for i in range(evaluations):
            scoring = i == total
            code = params if quantiser is None else _storable(params, quantiser, collage.contraction, named)
            with torch.set_grad_enabled(not scoring):
                step = collage.step_fn(code, spatial, scale)
                if i < settings.collage_steps:
                    loss = torch.mean((step(x) - x) ** 2)
                else:
                    z, _ = solver(step, z.detach())  # warm start from the last fixed point
                    loss = torch.mean((z - x) ** 2)
            mse = loss.item()
            history.append(mse)
            if scoring:
                if mse < least:
                    best = code.map(lambda t: t.detach())
                break
            if quantiser is None:
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            else:
                # Backtracking (module docstring): one step of the map underestimates the fixed point's
                # curvature, most where weights are large, so a full Newton step may overshoot.
                if i and all(torch.equal(a, b) for a, b in zip((code.weight, code.bias), (best.weight, best.bias))):
                    rate *= 2
                elif mse < least:
                    best, least = code.map(lambda t: t.detach()), mse
                    grads = torch.autograd.grad(loss, values)
                    anchor = [t.detach().clone() for t in values]
                    direction = [-g * n for g, n in zip(grads, newton)]
                else:
                    rate /= 2
                with torch.no_grad():
                    for t, a, d in zip(values, anchor, direction):
                        t.copy_(a + rate * d)
            bar.advance()
            bar.info(f"mse {mse:.2e}  ~{-10 * math.log10(max(mse, 1e-12)):.1f} dB")
    if quantiser is not None:
        return best, history
    return params.map(lambda t: t.detach()), history


class FitEncoder(Encoder):
    history: list[float]  # the loss after every step of the last encode()

    Config = FitConfig

    def encode(self, x: Tensor, collage: GridCollage, solver: Solver) -> CollageParams | SparseParams:
        """x: (b c *spatial) -> fitted parameters (detached)."""
        cfg = self.config
        settings = FitSettings(steps=cfg.steps, collage_steps=cfg.collage_steps, lr=cfg.lr)
        params, self.history = refine(x, collage, solver, collage.init_params(x), settings)
        return params
