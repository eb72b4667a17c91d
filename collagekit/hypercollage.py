"""A collage whose parameters come from a hypernetwork's integer latents: the part every learned
Neural Collage codec shares (paper section 3.2), whatever the signal's number of spatial dimensions.

A signal is cut into fixed-size cells (image tiles, audio segments); each cell is one collage signal.
The encoder maps a batch of cells to raw latents, one ``p``-vector per range cell; quantised latents
times learned per-channel gains are the collage parameters; a factorised prior prices them; decoding
solves every cell's fixed point as one batch.

Shapes: ``t`` cells, ``p`` latent channels per range cell (the raw parameters of one range), ``k``
range cells per cell, ``*size`` the cell's spatial size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from einops import rearrange
from torch import Tensor, nn

from collagekit.operator import CollageParams, GridCollage
from collagekit.prior import LaplacePrior
from collagekit.solver import fixed_point

# The order of a latent vector's channel groups.
PARAM_KINDS = ("scale", "mix", "aux", "bias")


class HyperCollage(nn.Module):
    """Collage operator over one cell (with its learned patches), hypernetwork, gains and prior.

    ``make_encoder(p)`` builds the hypernetwork for ``p`` latent channels: (t 1 *size) -> (t p k).
    ``gain_init`` maps each of :data:`PARAM_KINDS` to the parameter size of one latent unit at the start.
    """

    def __init__(self, collage: GridCollage, size: tuple[int, ...], make_encoder: Callable[[int], nn.Module], gain_init: dict[str, float]) -> None:
        super().__init__()
        self.collage = collage
        self.size = tuple(size)
        shapes = collage.param_shapes(1, self.size)
        self.ranges = shapes["bias"][1]
        self.sizes = {kind: (shapes[kind][2] if kind != "bias" else 1) for kind in PARAM_KINDS}
        outputs = sum(self.sizes.values())
        self.encoder = make_encoder(outputs)
        # Latent units -> parameter units, per channel, learned: the model picks each parameter's precision.
        self.log_gain = nn.Parameter(torch.cat([torch.full((self.sizes[k],), math.log(gain_init[k])) for k in PARAM_KINDS]))
        self.prior = LaplacePrior(outputs)

    @property
    def channels(self) -> int:
        return int(self.log_gain.numel())

    def latents(self, cells: Tensor) -> Tensor:
        """(t 1 *size) -> (t p k)."""
        return self.encoder(cells)

    def params(self, q: Tensor) -> CollageParams:
        """(t p k) quantised latents -> the cells' :class:`CollageParams` (one channel)."""
        v = q * self.log_gain.exp()[:, None]
        parts = dict(zip(PARAM_KINDS, torch.split(v, [self.sizes[k] for k in PARAM_KINDS], dim=1)))
        return CollageParams(
            scale=rearrange(parts["scale"], "t s k -> t 1 k s"),
            mix=rearrange(parts["mix"], "t s k -> t 1 k s"),
            aux=rearrange(parts["aux"], "t s k -> t 1 k s"),
            bias=rearrange(parts["bias"], "t 1 k -> t 1 k"),
        )

    def decode(
        self,
        q: Tensor,
        scale: int = 1,
        *,
        tol: float = 1e-4,
        max_iter: int = 100,
        gradient: str = "none",
        on_step: Callable[[], None] | None = None,
    ) -> Tensor:
        """(t p k) -> (t 1 *(size * scale)): every cell's attractor, solved as one batch from zeros.

        ``on_step`` is called at every operator evaluation (progress bars)."""
        step = self.collage.step_fn(self.params(q), self.size, scale)
        if on_step is not None:
            inner = step

            def step(z: Tensor) -> Tensor:
                on_step()
                return inner(z)

        z0 = q.new_zeros(q.shape[0], 1, *(s * scale for s in self.size))
        z, _ = fixed_point(step, z0, method="anderson", tol=tol, max_iter=max_iter, gradient=gradient, backward_max_iter=max_iter)
        return z
