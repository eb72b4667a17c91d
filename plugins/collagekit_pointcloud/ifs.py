"""Iterated function systems in 3D: K affine maps ``f_k(x) = A_k x + t_k`` that are contractions by construction.

Shapes in einops notation: ``k`` maps, ``n`` points, ``i j`` the three coordinates.

Each linear part is ``A_k = U_k · diag(σ_k) · V_kᵀ`` with ``U_k, V_k`` rotations (exponentials of
skew-symmetric matrices) and ``σ_k = σ_max · sigmoid(s_k)``, so ``‖A_k‖₂ = max σ_k < σ_max < 1`` for any
value of the raw parameters: gradient descent can never leave the set of contractions. A fixed sign per
map on the last singular value lets a map reflect (det A < 0), which rotations alone cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from collagekit.errors import CollagekitError
from collagekit_pointcloud.config import SIGMA_MAX



@dataclass
class IFS:
    """A fitted IFS, plain tensors: ``A (k i j)``, ``t (k i)``, ``p (k)`` the chaos-game probabilities."""

    A: Tensor
    t: Tensor
    p: Tensor

    def __post_init__(self) -> None:
        k = self.A.shape[0]
        if self.A.shape != (k, 3, 3) or self.t.shape != (k, 3) or self.p.shape != (k,) or k < 1:
            raise CollagekitError(f"an IFS needs A (k 3 3), t (k 3), p (k); got {tuple(self.A.shape)}, {tuple(self.t.shape)}, {tuple(self.p.shape)}")

    @property
    def maps(self) -> int:
        return self.A.shape[0]

    def lipschitz(self) -> Tensor:
        """(k,): ‖A_k‖₂, the largest singular value of every map."""
        return torch.linalg.matrix_norm(self.A.double(), ord=2).float()

    def apply(self, x: Tensor) -> Tensor:
        """(n i) -> (k n i): every map applied to every point."""
        return torch.einsum("kij,nj->kni", self.A, x) + self.t[:, None, :]

    def to(self, device: torch.device | str) -> IFS:
        return IFS(self.A.to(device), self.t.to(device), self.p.to(device))


def skew(w: Tensor) -> Tensor:
    """(... 3) -> (... 3 3): the skew-symmetric matrix of w (its exponential is a rotation)."""
    zero = torch.zeros_like(w[..., 0])
    x, y, z = w.unbind(-1)
    return torch.stack(
        [torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)], -2
    )


def rotation_log(R: Tensor) -> Tensor:
    """(... 3 3) rotations -> (... 3) axis-angle vectors w with exp(skew(w)) = R, for every angle in [0, π].

    The antisymmetric part ``(R - Rᵀ)/2 = sin θ [a]ₓ`` gives the axis only while sin θ is not small; near
    π it vanishes, so for θ > π/2 the axis comes from the symmetric part instead,
    ``(R + Rᵀ)/2 - cos θ I = (1 - cos θ) a aᵀ`` (its largest column, signed to agree with the
    antisymmetric part). Computed in float64.
    """
    R = R.double()
    vee = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    cos = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    angle = torch.atan2(vee.norm(dim=-1) / 2, cos)
    # small and moderate angles: w = θ / (2 sin θ) · vee
    scale = torch.where(angle < 1e-4, 0.5 + angle**2 / 12, angle / (2 * torch.sin(angle).clamp_min(1e-12)))
    from_vee = vee * scale[..., None]
    # large angles: the axis from the symmetric part's largest column
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    outer = (R + R.transpose(-1, -2)) / 2 - cos[..., None, None] * eye
    column = outer.diagonal(dim1=-2, dim2=-1).argmax(-1)
    axis = torch.take_along_dim(outer, column[..., None, None].expand(*column.shape, 3, 1), -1)[..., 0]
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    axis = axis * torch.where((axis * vee).sum(-1) < 0, -1.0, 1.0)[..., None]
    return torch.where((cos < 0)[..., None], axis * angle[..., None], from_vee)


class ContractiveMaps(nn.Module):
    """Trainable K affine maps, contractive by construction; a leading batch axis ``r`` holds restarts.

    Parameters (all ``(r k ...)``): ``u``, ``v`` axis-angle vectors of U and V, ``s`` raw singular values,
    ``t`` translations; the buffer ``sign`` (r k) is ±1 on the last singular value.
    """

    def __init__(self, A: Tensor, t: Tensor, sigma_max: float = SIGMA_MAX) -> None:
        """Start from the (r k 3 3) linear parts A (any matrices: singular values are clamped below
        sigma_max) and (r k 3) translations t."""
        super().__init__()
        self.sigma_max = sigma_max
        U, S, Vh = torch.linalg.svd(A.double())
        # A = U S Vh with det U, det Vh = ±1. Flip the last column of U and of V = Vhᵀ where their
        # determinant is -1: both become rotations, and the product of the two flips moves onto the
        # last singular value, so U' diag(S1, S2, sign S3) V'ᵀ is still exactly A.
        d_u, d_v = torch.linalg.det(U).sign(), torch.linalg.det(Vh).sign()
        V = Vh.transpose(-1, -2)
        U = torch.cat([U[..., :2], U[..., 2:] * d_u[..., None, None]], -1)
        V = torch.cat([V[..., :2], V[..., 2:] * d_v[..., None, None]], -1)
        sign = d_u * d_v
        ratio = (S / sigma_max).clamp(0.02, 0.995)
        self.u = nn.Parameter(rotation_log(U).float())
        self.v = nn.Parameter(rotation_log(V).float())
        self.s = nn.Parameter(torch.logit(ratio).float())
        self.t = nn.Parameter(t.float().clone())
        self.register_buffer("sign", sign.float())

    def relax(self, sigma_max: float) -> None:
        """Raise the bound on ‖A_k‖₂ to ``sigma_max``, keeping every map exactly as it is."""
        if not self.sigma_max <= sigma_max < 1:
            raise CollagekitError(f"the new bound must lie in [{self.sigma_max}, 1), got {sigma_max}")
        with torch.no_grad():
            self.s.copy_(torch.logit(torch.sigmoid(self.s) * (self.sigma_max / sigma_max)))
        self.sigma_max = sigma_max

    def linear(self) -> Tensor:
        """(r k 3 3): A = U diag(σ) Vᵀ with σ = σ_max · sigmoid(s) · (1, 1, sign)."""
        U = torch.linalg.matrix_exp(skew(self.u))
        V = torch.linalg.matrix_exp(skew(self.v))
        sigma = self.sigma_max * torch.sigmoid(self.s)
        sigma = torch.cat([sigma[..., :2], sigma[..., 2:] * self.sign[..., None]], -1)
        return U @ (sigma[..., :, None] * V.transpose(-1, -2))

    def forward(self, x: Tensor) -> Tensor:
        """(r n 3) or (n 3) -> (r k n 3): every map of every restart applied to the points."""
        A = self.linear()
        if x.ndim == 2:
            return torch.einsum("rkij,nj->rkni", A, x) + self.t[:, :, None, :]
        return torch.einsum("rkij,rnj->rkni", A, x) + self.t[:, :, None, :]

    def select(self, index: Tensor) -> ContractiveMaps:
        """Keep, for each map k, the restart ``index[k]``: a module with a single restart (1 k ...)."""
        with torch.no_grad():
            k = torch.arange(index.shape[0], device=index.device)
            A = self.linear()[index, k][None]
            t = self.t[index, k][None]
        return ContractiveMaps(A, t, self.sigma_max)

    def ifs(self, p: Tensor, restart: int = 0) -> IFS:
        with torch.no_grad():
            return IFS(self.linear()[restart].detach().clone(), self.t[restart].detach().clone(), p.detach().clone())
