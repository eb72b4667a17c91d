"""Per-datum fitting: find one signal's collage parameters by gradient descent.

A warm-up on the one-step collage loss ``|x - F(x)|^2`` (cheap, and by the Collage theorem an upper
bound on the fixed-point error up to 1/(1 - rho)), then the fixed-point loss ``|x - z*(w)|^2`` with
gradients through the solver (implicit differentiation by default). Learned auxiliary patches in the
operator are fitted too. A sparse code keeps its layout and sources (integers); its weights, biases and
constant-cell weights are fitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

from collagekit.config import FitConfig
from collagekit.interfaces import Encoder
from collagekit.operator import CollageParams, GridCollage
from collagekit.progress import progress_bar
from collagekit.solver import Solver
from collagekit.sparse import SparseParams

Code = TypeVar("Code", CollageParams, SparseParams)


@dataclass(frozen=True)
class FitSettings:
    steps: int
    collage_steps: int
    lr: float


def refine(x: Tensor, collage: GridCollage, solver: Solver, start: Code, settings: FitSettings) -> tuple[Code, list[float]]:
    """Gradient steps from ``start`` (collage loss, then fixed-point loss) -> (detached code, loss after
    every step). x: (b c *spatial)."""
    spatial = tuple(x.shape[2:])
    params = start.map(lambda t: t.clone().requires_grad_() if t.is_floating_point() else t)
    learnable = [t for t in params if t.requires_grad]
    history: list[float] = []
    total = settings.collage_steps + settings.steps
    if total == 0:
        return start, history
    optimiser = torch.optim.Adam([*learnable, *collage.parameters()], lr=settings.lr)
    z = x.detach()
    with progress_bar("fitting", total) as bar:
        for i in range(total):
            step = collage.step_fn(params, spatial)
            if i < settings.collage_steps:
                loss = torch.mean((step(x) - x) ** 2)
            else:
                z, _ = solver(step, z.detach())  # warm start from the last fixed point
                loss = torch.mean((z - x) ** 2)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            mse = loss.item()
            history.append(mse)
            bar.advance()
            bar.info(f"mse {mse:.2e}  ~{-10 * math.log10(max(mse, 1e-12)):.1f} dB")
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
