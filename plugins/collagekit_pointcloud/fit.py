"""Fit an IFS to a point cloud (Collage theorem for sets): find K contractions whose attractor is the cloud.

Shapes in einops notation: ``n`` points of the cloud, ``k`` maps, ``r`` restarts, ``c`` points of a cell.

1. **Partition** the (unit-cube) cloud S into K cells (k-means by default).
2. **Initialise** each map from its cell by moment matching, ``A = Σ_cell^½ R Σ_S^-½`` for several
   rotations and reflections ``R`` (the restarts ``r``), ``t = μ_cell - A μ_S``; each restart is refined
   by registering ``f_k(S)`` onto cell k alone (a per-map Chamfer, all maps and restarts in one batch),
   and each map keeps its best restart.
3. **Refine jointly** with Adam on the collage loss ``Chamfer(S, ∪_k f_k(S))`` (the Collage theorem:
   a small collage distance bounds the attractor's distance, ``h(S, S*) ≤ h(S, F(S)) / (1 - ρ)``) plus,
   after a warm-up, the Chamfer between S and the attractor itself, sampled by a population of chaos-game
   walkers that follows the maps as they move (the last ``depth`` map applications carry the gradient).
4. **Probabilities** ``p_k``: the share of S whose nearest collage point comes from map k, i.e. the mass
   of S that piece k covers, so the chaos game reproduces the cloud's density.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from collagekit.progress import progress_bar
from collagekit_pointcloud.chamfer import cover_loss, nearest
from collagekit_pointcloud.chaos import chaos_game
from collagekit_pointcloud.ifs import IFS, ContractiveMaps
from collagekit_pointcloud.partition import KMeans, Octree
from collagekit_pointcloud.threads import one_cpu_thread


class FitSettings(BaseModel):
    """How hard to fit. Defaults fit a 10k-point cloud with 2-8 maps in seconds on a 2-core CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sample: int = Field(1024, ge=16, le=1 << 16, description="points of the cloud used per fitting step")
    restarts: int = Field(8, ge=1, le=64, description="initial rotations/reflections tried per map")
    register_steps: int = Field(60, ge=0, le=10_000, description="per-map registration steps (Adam)")
    steps: int = Field(300, ge=0, le=100_000, description="joint refinement steps (Adam)")
    lr: float = Field(0.02, gt=0, le=1.0, description="Adam learning rate (cosine-decayed)")
    attractor_weight: float = Field(1.0, ge=0, description="weight of the attractor Chamfer next to the collage Chamfer")
    depth: int = Field(4, ge=1, le=32, description="map applications the attractor gradient flows through")
    trials: int = Field(4, ge=1, le=64, description="initialisations (partition + restarts) tried; the best is refined")
    trial_steps: int = Field(100, ge=0, le=10_000, description="refinement steps that judge each trial")


@dataclass
class FitResult:
    ifs: IFS
    labels: Tensor  # (n,) the partition of the sample
    history: list[float] = field(default_factory=list)  # collage loss per joint step


def _sqrtm(cov: Tensor, inverse: bool = False) -> Tensor:
    """(... 3 3) symmetric PSD -> its (inverse) square root, eigenvalues floored to stay finite."""
    vals, vecs = torch.linalg.eigh(cov.double())
    vals = vals.clamp_min(1e-8 * vals.amax(-1, keepdim=True).clamp_min(1e-12))
    power = -0.5 if inverse else 0.5
    return ((vecs * vals[..., None, :] ** power) @ vecs.transpose(-1, -2)).float()


def _restart_rotations(r: int, generator: torch.Generator) -> Tensor:
    """(r 3 3): the identity, then random orthogonal matrices; every other one a reflection."""
    q, rr = torch.linalg.qr(torch.randn(r, 3, 3, generator=generator))
    q = q * torch.sign(torch.diagonal(rr, dim1=-2, dim2=-1))[:, None, :]  # Haar-distributed
    q = q * torch.linalg.det(q).sign()[:, None, None]  # rotations
    q[0] = torch.eye(3)
    flip = torch.ones(r, 3)
    flip[1::2, 2] = -1.0
    return q * flip[:, None, :]


def initial_maps(points: Tensor, labels: Tensor, k: int, restarts: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Moment matching per cell: (r k 3 3) linear parts and (r k 3) translations mapping S onto cell k."""
    mu = points.mean(0)
    cov_s = torch.cov(points.T)
    inv_root = _sqrtm(cov_s, inverse=True)
    rot = _restart_rotations(restarts, generator).to(points.device)
    A, t = [], []
    for cell in range(k):
        c = points[labels == cell]
        mu_c = c.mean(0)
        cov_c = torch.cov(c.T) if c.shape[0] > 1 else torch.zeros(3, 3, device=points.device)
        cov_c = cov_c + 1e-6 * torch.eye(3, device=points.device)
        a = _sqrtm(cov_c) @ rot @ inv_root  # (r 3 3)
        A.append(a)
        t.append(mu_c - a @ mu)
    return torch.stack(A, 1), torch.stack(t, 1)


def _cell_samples(points: Tensor, labels: Tensor, k: int, size: int, generator: torch.Generator) -> Tensor:
    """(k c 3): ``size`` points of every cell (drawn with replacement when the cell is smaller)."""
    out = []
    for cell in range(k):
        idx = (labels == cell).nonzero()[:, 0]
        pick = torch.randint(len(idx), (size,), generator=generator).to(idx.device)
        out.append(points[idx[pick]])
    return torch.stack(out)


def _batched_chamfer(a: Tensor, b: Tensor) -> Tensor:
    """(g n 3), (g m 3) -> (g,): symmetric Chamfer-L2 per group (small groups: dense per group is fine)."""
    d = torch.cdist(a, b).square()
    return d.min(-1).values.mean(-1) + d.min(-2).values.mean(-1)


def _register(maps: ContractiveMaps, source: Tensor, cells: Tensor, steps: int, lr: float) -> Tensor:
    """Refine every restart of every map so that f_k(source) covers cell k; return the (r k) final losses."""
    opt = torch.optim.Adam(maps.parameters(), lr=lr)
    r, k = maps.t.shape[:2]
    target = cells[None].expand(r, -1, -1, -1).reshape(r * k, *cells.shape[1:])
    for _ in range(steps):
        images = maps(source).reshape(r * k, source.shape[0], 3)
        loss = _batched_chamfer(images, target)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        return _batched_chamfer(maps(source).reshape(r * k, source.shape[0], 3), target).reshape(r, k)


def map_shares(maps: ContractiveMaps, points: Tensor) -> Tensor:
    """(k,): the share of ``points`` whose nearest collage point f_k(S) comes from map k (floored at 1 %)."""
    with torch.no_grad():
        images = maps(points)[0]  # k n 3
        k, n = images.shape[:2]
        owner = nearest(points, images.reshape(k * n, 3))[1] // n
        share = torch.bincount(owner, minlength=k).double() / points.shape[0]
        share = share.clamp_min(0.01)
        return (share / share.sum()).float()


def fit_ifs(
    points: Tensor,
    maps: int,
    settings: FitSettings,
    generator: torch.Generator,
    partitioner: KMeans | Octree | None = None,
) -> FitResult:
    """(n 3) cloud in the unit cube -> an IFS with ``maps`` contractions whose attractor approximates it."""
    with one_cpu_thread(points.device):
        return _fit(points, maps, settings, generator, partitioner or KMeans())


def _initial_model(sample: Tensor, maps: int, settings: FitSettings, generator: torch.Generator, partitioner: KMeans | Octree) -> tuple[ContractiveMaps, Tensor]:
    """Steps 1-2 for one trial: partition, moment-matching restarts, per-map registration, best per map."""
    labels = partitioner.split(sample, maps, generator)
    A0, t0 = initial_maps(sample, labels, maps, settings.restarts, generator)
    restarts = ContractiveMaps(A0, t0).to(sample.device)
    source = sample[torch.randperm(sample.shape[0], generator=generator)[:256].to(sample.device)]
    cells = _cell_samples(sample, labels, maps, 128, generator)
    losses = _register(restarts, source, cells, settings.register_steps, settings.lr * 2.5)
    return restarts.select(losses.argmin(0)).to(sample.device), labels


def _fit(points: Tensor, maps: int, settings: FitSettings, generator: torch.Generator, partitioner: KMeans | Octree) -> FitResult:
    n = points.shape[0]
    sample = points[torch.randperm(n, generator=generator)[: settings.sample].to(points.device)] if n > settings.sample else points
    # Collage fitting has local minima (a map that covers two pieces, two maps on one piece): several
    # trials from different partitions get a short refinement each, and the best goes on.
    best: tuple[float, ContractiveMaps, Tensor] | None = None
    with progress_bar("fitting", settings.trials * settings.trial_steps + settings.steps) as bar:
        for _ in range(settings.trials):
            model, labels = _initial_model(sample, maps, settings, generator, partitioner)
            history = _refine(model, points, sample, settings.trial_steps, settings, generator, bar, attractor=False)
            score = sum(history[-10:]) / max(1, len(history[-10:])) if history else float("inf")
            if best is None or score < best[0]:
                best = (score, model, labels)
        assert best is not None
        _, model, labels = best
        history = _refine(model, points, sample, settings.steps, settings, generator, bar, attractor=True)
    p = map_shares(model, sample)
    return FitResult(ifs=model.ifs(p), labels=labels, history=history)


def _refine(
    model: ContractiveMaps,
    points: Tensor,
    sample: Tensor,
    steps: int,
    settings: FitSettings,
    generator: torch.Generator,
    bar,
    attractor: bool,
) -> list[float]:
    """Step 3: Adam on the collage Chamfer (and, after a warm-up, the attractor's); returns the collage losses."""
    n, device = points.shape[0], points.device
    history: list[float] = []
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / max(1, steps))))
    warmup = steps // 4
    walkers: Tensor | None = None
    p = map_shares(model, sample)
    for step in range(steps):
        # A fresh random subset of the cloud every step: the fit sees all of it, and the sampling
        # error of one fixed subset does not bias the optimum.
        batch = points[torch.randint(n, (settings.sample,), generator=generator).to(device)] if n > settings.sample else points
        images = model(batch)[0].reshape(-1, 3)  # (k n) 3: the collage F(S)
        collage = cover_loss(batch, points, images)
        loss = collage
        if attractor and settings.attractor_weight > 0 and step >= warmup:
            if step % 25 == 0:  # the shares move slowly: refresh them now and then, not every step
                p = map_shares(model, sample)
            walkers = _walk(model, p, sample, walkers, settings.depth, generator)
            loss = loss + settings.attractor_weight * cover_loss(batch, points, walkers)
            walkers = walkers.detach()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(collage.detach()))
        bar.advance()
        if step % 20 == 0:
            bar.info(f"collage {history[-1]:.2e}")
    return history


def _walk(model: ContractiveMaps, p: Tensor, sample: Tensor, walkers: Tensor | None, depth: int, generator: torch.Generator) -> Tensor:
    """Advance the attractor walkers by ``depth`` random maps (with gradient): (m 3) points near S*."""
    m = sample.shape[0]
    if walkers is None:  # start on the current attractor
        walkers = chaos_game(model.ifs(p), m, generator=generator, device=sample.device)[0].contiguous()
    A = model.linear()[0]
    y = walkers
    for _ in range(depth):
        choice = torch.multinomial(p.cpu(), m, replacement=True, generator=generator).to(sample.device)
        y = torch.einsum("nij,nj->ni", A[choice], y) + model.t[0][choice]
    return y
