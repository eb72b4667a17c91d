"""Known 3D fractals for tests and the ``ifs`` benchmark: Sierpinski tetrahedron, a 3D fern, random IFS."""

from __future__ import annotations

import math

import torch

from collagekit_pointcloud.ifs import IFS


def sierpinski_tetrahedron() -> IFS:
    """Four maps x -> (x + v_i) / 2 towards the vertices of a regular tetrahedron."""
    v = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, math.sqrt(3) / 2, 0.0], [0.5, math.sqrt(3) / 6, math.sqrt(6) / 3]])
    return IFS(0.5 * torch.eye(3).repeat(4, 1, 1), 0.5 * v, torch.full((4,), 0.25))


def fern_3d() -> IFS:
    """A 3D Barnsley fern (Paul Bourke's four maps: stem, leaflet cascade, left and right fronds)."""
    A = torch.tensor(
        [
            [[0.0, 0.0, 0.0], [0.0, 0.18, 0.0], [0.0, 0.0, 0.0]],
            [[0.85, 0.0, 0.0], [0.0, 0.85, 0.1], [0.0, -0.1, 0.85]],
            [[0.2, -0.2, 0.0], [0.2, 0.2, 0.0], [0.0, 0.0, 0.3]],
            [[-0.2, 0.2, 0.0], [0.2, 0.2, 0.0], [0.0, 0.0, 0.3]],
        ]
    )
    t = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.6, 0.0], [0.0, 0.8, 0.0], [0.0, 0.8, 0.0]])
    return IFS(A, t, torch.tensor([0.01, 0.85, 0.07, 0.07]))


def random_ifs(seed: int, maps: int | None = None) -> IFS:
    """A random contractive IFS in the style of PC-FractalDB: 2-7 maps, ``A = U diag(σ) Vᵀ`` with Haar
    orthogonal U, V (reflections included), σ uniform in [0.15, 0.75], t uniform in [-1, 1]³, and
    chaos-game probabilities proportional to |det A| (floored so no piece is starved)."""
    gen = torch.Generator().manual_seed(seed)
    k = maps if maps is not None else int(torch.randint(2, 8, (1,), generator=gen))

    def haar(size: int) -> torch.Tensor:
        q, r = torch.linalg.qr(torch.randn(size, 3, 3, generator=gen, dtype=torch.float64))
        return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]

    sigma = 0.15 + 0.6 * torch.rand(k, 3, generator=gen, dtype=torch.float64)
    A = haar(k) @ torch.diag_embed(sigma) @ haar(k).transpose(-1, -2)
    t = 2 * torch.rand(k, 3, generator=gen, dtype=torch.float64) - 1
    det = torch.linalg.det(A).abs()
    p = det / det.sum()
    p = p.clamp_min(0.2 / k)
    return IFS(A.float(), t.float(), (p / p.sum()).float())


def unit_cube(points: torch.Tensor) -> torch.Tensor:
    """(n 3) -> (n 3) scaled uniformly into [0, 1]³, centred (the normalisation every metric uses)."""
    lo, hi = points.amin(0), points.amax(0)
    extent = float((hi - lo).max())
    return (points - (lo + hi) / 2) / max(extent, 1e-12) + 0.5
