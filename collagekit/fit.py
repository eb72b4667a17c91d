"""Per-datum fitting: find one signal's collage parameters by gradient descent.

A warm-up on the one-step collage loss ``|x - F(x)|^2`` (cheap, and by the Collage theorem an upper
bound on the fixed-point error up to 1/(1 - rho)), then the fixed-point loss ``|x - z*(w)|^2`` with
gradients through the solver (implicit differentiation by default). Learned auxiliary patches in the
operator are fitted too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from collagekit.config import FitConfig
from collagekit.interfaces import Encoder
from collagekit.operator import CollageParams, GridCollage
from collagekit.progress import progress_bar
from collagekit.solver import Solver


class FitEncoder(Encoder):
    history: list[float]  # the loss after every step of the last encode()

    Config = FitConfig

    def encode(self, x: Tensor, collage: GridCollage, solver: Solver) -> CollageParams:
        """x: (b c *spatial) -> fitted parameters (detached)."""
        cfg = self.config
        spatial = tuple(x.shape[2:])
        params = collage.init_params(x).map(lambda t: t.clone().requires_grad_())
        optimiser = torch.optim.Adam([*params, *collage.parameters()], lr=cfg.lr)
        self.history = []
        z = x.detach()
        with progress_bar("fitting", cfg.collage_steps + cfg.steps) as bar:
            for i in range(cfg.collage_steps + cfg.steps):
                step = collage.step_fn(params, spatial)
                if i < cfg.collage_steps:
                    loss = torch.mean((step(x) - x) ** 2)
                else:
                    z, _ = solver(step, z.detach())  # warm start from the last fixed point
                    loss = torch.mean((z - x) ** 2)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                mse = loss.item()
                self.history.append(mse)
                bar.advance()
                bar.info(f"mse {mse:.2e}  ~{-10 * math.log10(max(mse, 1e-12)):.1f} dB")
        return params.map(lambda t: t.detach())
