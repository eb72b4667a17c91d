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

    @torch.no_grad()
    def rd_codes(self, cells: Tensor, lmbda: Tensor, max_symbol: int, *, rounds: int = 3, tol: float = 1e-4, max_iter: int = 100) -> Tensor:
        """(t 1 *size) cells -> (t p k) integer codes, chosen per cell by rate and distortion.

        Rate-distortion optimised quantisation, an encoder-side choice (every decoder reads the
        result): each cell's latents rounded, or rounded with the cell's domain weights (``scale``)
        dropped, whichever costs less in ``lmbda * squared error + bits``. ``lmbda`` (t): the weight
        of one unit of squared error against one bit, per cell (a model's training objective gives
        it). Bits are first the prior's; then, ``rounds - 1`` times, the chosen codes' own
        per-channel frequencies (what the adaptive coder pays: once many cells drop their domain
        weights, the zeros left cost almost nothing). Measured on Kodak with the shipped image models,
        the domains pay for their bits at the lowest rate and mostly not above it.
        """
        q = torch.round(self.latents(cells)).clamp(-max_symbol, max_symbol)
        plain = q.clone()
        q[:, : self.sizes["scale"]] = 0
        if torch.equal(q, plain):
            return plain
        candidates = torch.stack([plain, q])  # (v t p k)
        error = torch.stack([((self.decode(c, tol=tol, max_iter=max_iter) - cells) ** 2).flatten(1).sum(1) for c in candidates])
        distortion = lmbda * error  # (v t)
        bits = torch.stack([self.prior.bits(c).flatten(1).sum(1) for c in candidates])
        cell = torch.arange(q.shape[0], device=q.device)
        for _ in range(rounds - 1):
            chosen = candidates[(distortion + bits).argmin(0), cell]
            bits = torch.stack([_frequency_bits(c, chosen, max_symbol) for c in candidates])
        return candidates[(distortion + bits).argmin(0), cell]

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


def _frequency_bits(codes: Tensor, reference: Tensor, max_symbol: int) -> Tensor:
    """(t p k) codes -> (t) bits each cell's codes cost under ``reference``'s per-channel symbol
    frequencies (plus one half count per symbol, so unseen values stay finite)."""
    p = codes.shape[1]
    offset = (torch.arange(p, device=codes.device) * (2 * max_symbol + 1))[None, :, None]
    counts = torch.bincount((reference.long() + max_symbol + offset).flatten(), minlength=p * (2 * max_symbol + 1))
    counts = counts.view(p, -1).double() + 0.5
    cost = -torch.log2(counts / counts.sum(1, keepdim=True)).flatten()
    return cost[(codes.long() + max_symbol + offset).flatten()].view(codes.shape).flatten(1).sum(1).to(codes.dtype)
