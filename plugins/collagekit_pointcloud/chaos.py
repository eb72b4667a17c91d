"""The chaos game, batched: sample an IFS's attractor with any number of points, labelled by map.

Shapes in einops notation: ``w`` walkers, ``n`` output points, ``k`` maps.

The textbook chaos game draws a map at random for every step of one walker. Drawing a map per walker
per step and gathering its parameters costs a random gather of 12 numbers per point, which is what
makes public renderers slow. Here the ``w`` walkers live in one ``(3 w)`` array whose columns are cut
into K contiguous blocks, block k holding ``p_k · w`` columns: every step applies map k to block k with
one small matrix product, then moves the walkers to new columns by a random permutation drawn once per
render. Following one walker, its column (and so its map) along the permutation's cycles is a random
sequence with the right frequencies ``p_k``, so each walker plays an ordinary chaos game; and since the
permutation's cycles are long, the walkers on one cycle see shifted windows of one long random
sequence: one chaos-game orbit, computed ``w`` points at a time. Points are kept only after a burn-in of
``ceil(log(tol) / log(max ‖A_k‖₂))`` steps, after which every walker is within ``tol`` (relative) of the
attractor whatever its start.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from collagekit.errors import CollagekitError
from collagekit.progress import progress_bar
from collagekit_pointcloud.config import MAX_POINTS
from collagekit_pointcloud.ifs import IFS
from collagekit_pointcloud.threads import one_cpu_thread

MAX_BURN_IN = 200


def burn_in_steps(ifs: IFS, tol: float = 1e-6) -> int:
    """Steps after which any start is within ``tol`` of the attractor (relative to its size)."""
    rho = float(ifs.lipschitz().max())
    if not rho < 1:
        raise CollagekitError(f"the IFS is not contractive (largest ‖A_k‖₂ = {rho:.4f}); it has no attractor")
    return min(MAX_BURN_IN, max(1, math.ceil(math.log(tol) / math.log(max(rho, 1e-3)))))


def block_sizes(p: Tensor, walkers: int) -> list[int]:
    """(k,) probabilities -> K block sizes summing to ``walkers`` (largest remainders; a map with p > 0 gets
    at least one walker, so small pieces of the attractor are never left out)."""
    p = p.double().clamp_min(0)
    if not torch.isfinite(p).all() or float(p.sum()) <= 0:
        raise CollagekitError("the chaos-game probabilities must be finite, non-negative and not all zero")
    exact = p / p.sum() * walkers
    sizes = exact.floor().long()
    sizes = torch.where((p > 0) & (sizes == 0), torch.ones_like(sizes), sizes)
    order = torch.argsort(exact - exact.floor(), descending=True)
    i = 0
    while int(sizes.sum()) < walkers:
        sizes[order[i % len(order)]] += 1
        i += 1
    while int(sizes.sum()) > walkers:
        biggest = int(torch.argmax(sizes))
        sizes[biggest] -= 1
    return [int(s) for s in sizes]


def chaos_game(
    ifs: IFS,
    n: int,
    *,
    generator: torch.Generator | None = None,
    walkers: int = 1 << 18,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Sample ``n`` points of the attractor: ``(n 3)`` float32 points and ``(n,)`` uint8 map labels
    (the map that placed each point, i.e. the piece ``f_k(S*)`` it lies in)."""
    if n < 1 or n > MAX_POINTS:
        raise CollagekitError(f"the number of points must be between 1 and {MAX_POINTS:,}, got {n:,}")
    if ifs.maps > 255:
        raise CollagekitError(f"at most 255 maps can be rendered, got {ifs.maps}")
    device = torch.device(device)
    ifs = ifs.to(device)
    burn = burn_in_steps(ifs)
    walkers = max(ifs.maps, min(walkers, n))
    sizes = block_sizes(ifs.p.cpu(), walkers)
    offsets = [0, *torch.tensor(sizes).cumsum(0).tolist()]
    A, t = ifs.A.float(), ifs.t.float()[:, :, None]  # (k 3 3), (k 3 1)
    gen = generator if generator is not None else torch.Generator(device="cpu").manual_seed(0)

    # Draw on the CPU generator (reproducible everywhere), then move to the device.
    x = torch.rand(3, walkers, generator=gen).to(device)
    perm = torch.randperm(walkers, generator=gen).to(device)
    labels_block = torch.repeat_interleave(torch.arange(ifs.maps, dtype=torch.uint8), torch.tensor(sizes)).to(device)
    points = torch.empty(3, n, device=device)
    labels = torch.empty(n, dtype=torch.uint8, device=device)
    y = torch.empty(3, walkers, device=device)

    def step() -> None:
        for k in range(ifs.maps):
            lo, hi = offsets[k], offsets[k + 1]
            if hi > lo:
                torch.addmm(t[k], A[k], x[:, lo:hi], out=y[:, lo:hi])

    with torch.no_grad(), one_cpu_thread(device):
        for _ in range(burn):
            step()
            x = torch.index_select(y, 1, perm)
        done = 0
        steps = math.ceil(n / walkers)
        with progress_bar("chaos game", steps) as bar:
            while done < n:
                step()
                take = min(walkers, n - done)
                if take == walkers:
                    points[:, done : done + take] = y
                    labels[done : done + take] = labels_block
                else:  # a partial last step: random columns, not the first blocks (that would favour map 0)
                    keep = perm[:take]
                    points[:, done : done + take] = y[:, keep]
                    labels[done : done + take] = labels_block[keep]
                done += take
                x = torch.index_select(y, 1, perm)
                bar.advance()
    return points.T, labels
