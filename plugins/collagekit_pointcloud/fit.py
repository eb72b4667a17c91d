"""Fit an IFS to a point cloud (Collage theorem for sets): find K contractions whose attractor is the cloud.

Shapes in einops notation: ``n`` points of the cloud, ``k`` maps, ``r`` restarts, ``c`` points of a cell.

1. **Partition** the (unit-cube) cloud S into K cells (k-means by default).
2. **Initialise** each map from its cell by moment matching, ``A = Σ_cell^½ R Σ_S^-½`` for several
   rotations and reflections ``R`` (the restarts ``r``), ``t = μ_cell - A μ_S``; each restart is refined
   by registering ``f_k(S)`` onto cell k alone (a per-map Chamfer, all maps and restarts in one batch).
   Each map then takes a restart by coordinate descent on the Chamfer of the *union* of the pieces
   (where pieces overlap, the cells are not the pieces, and per-cell choices double-cover).
3. **Trials**: steps 1-2 are repeated from several partitions; each trial gets a short collage-only
   refinement and the one whose *attractor* is nearest the cloud goes on. Trials run with a tighter
   contraction bound (``trial_sigma_max``): maps stretched to the bound are a common wrong basin of the
   collage loss; the final refinement releases the bound, so maps that need more still get it.
4. **Refine jointly** with Adam on the collage loss ``Chamfer(S, ∪_k f_k(S))`` (the Collage theorem:
   a small collage distance bounds the attractor's distance, ``h(S, S*) ≤ h(S, F(S)) / (1 - ρ)``) plus,
   after a warm-up, the Chamfer between S and the attractor itself, sampled by a population of chaos-game
   walkers that follows the maps as they move (the last ``depth`` map applications carry the gradient).
   The attractor Chamfer is measured every ``check`` steps and the best measured state is kept.
5. **Probabilities** ``p_k``: the share of S whose nearest collage point comes from map k, i.e. the mass
   of S that piece k covers, so the chaos game reproduces the cloud's density.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from collagekit.progress import progress_bar
from collagekit_pointcloud.chamfer import NearestIndex, cover_loss, nearest
from collagekit_pointcloud.chaos import chaos_game
from collagekit_pointcloud.config import FitSettings
from collagekit_pointcloud.ifs import IFS, SIGMA_MAX, ContractiveMaps
from collagekit_pointcloud.partition import KMeans, Octree
from collagekit_pointcloud.threads import one_cpu_thread

__all__ = ["FitResult", "FitSettings", "fit_ifs"]


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
    """(g n 3), (g m 3) -> (g,): symmetric Chamfer-L2 per group. The neighbours come from one dense
    distance block per group (small groups) without a graph; only the gathered pairs carry the gradient,
    so the backward pass costs O(g·(n+m)), not O(g·n·m)."""
    with torch.no_grad():
        d = torch.cdist(a, b)
        ab, ba = d.argmin(-1), d.argmin(-2)  # (g n), (g m)
    near_b = torch.gather(b, 1, ab[..., None].expand(-1, -1, 3))
    near_a = torch.gather(a, 1, ba[..., None].expand(-1, -1, 3))
    return ((a - near_b) ** 2).sum(-1).mean(-1) + ((b - near_a) ** 2).sum(-1).mean(-1)


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
    restarts = ContractiveMaps(A0, t0, settings.trial_sigma_max).to(sample.device)
    source = sample[torch.randperm(sample.shape[0], generator=generator)[:256].to(sample.device)]
    cells = _cell_samples(sample, labels, maps, 128, generator)
    losses = _register(restarts, source, cells, settings.register_steps, settings.lr * 2.5)
    choice = _joint_choice(restarts, source, sample[:512], losses.argmin(0))
    return restarts.select(choice).to(sample.device), labels


def _joint_choice(restarts: ContractiveMaps, source: Tensor, target: Tensor, choice: Tensor, sweeps: int = 2) -> Tensor:
    """(k,) restart per map, improved by coordinate descent on the collage Chamfer of the *union*.

    Each restart was judged on its own cell; where pieces overlap, the cells are not the pieces, and the
    best restart for a cell can double-cover a region another map already covers. Here each map in turn
    takes the restart that makes ``∪_k f_k(source)`` closest to ``target`` (m 3), the others held fixed.
    """
    with torch.no_grad():
        images = restarts(source)  # r k c 3
        r, k = images.shape[:2]
        ks = torch.arange(k, device=choice.device)
        for _ in range(sweeps):
            for j in range(k):
                others = images[choice[ks != j], ks[ks != j]].reshape(1, -1, 3).expand(r, -1, -1)
                unions = torch.cat([others, images[:, j]], 1)  # r (k c) 3: map j's every restart, with the rest
                choice[j] = _batched_chamfer(unions, target[None].expand(r, -1, -1)).argmin()
    return choice


def attractor_chamfer(model: ContractiveMaps, cloud: NearestIndex, sample: Tensor, size: int = 4096) -> float:
    """Symmetric Chamfer-L2 between the cloud and ``size`` points of the model's attractor (with the
    probabilities ``map_shares`` gives): the quantity the fit is judged by, from a fixed chaos-game seed
    so that two models are compared on equal terms."""
    p = map_shares(model, sample)
    walk = torch.Generator().manual_seed(0)
    attractor = chaos_game(model.ifs(p), size, generator=walk, walkers=size, device=sample.device)[0]
    return float(cloud(attractor)[0].double().mean() + nearest(cloud.ref, attractor)[0].double().mean())


def _fit(points: Tensor, maps: int, settings: FitSettings, generator: torch.Generator, partitioner: KMeans | Octree) -> FitResult:
    n = points.shape[0]
    sample = points[torch.randperm(n, generator=generator)[: settings.sample].to(points.device)] if n > settings.sample else points
    cloud = NearestIndex(points)
    # Collage fitting has local minima (a map that covers two pieces, two maps on one piece): several
    # trials from different partitions get a short refinement each, and the one whose attractor is
    # nearest the cloud goes on (the collage loss ranks trials less reliably: a map near the contraction
    # bound barely moves the collage but spreads the attractor).
    best: tuple[float, ContractiveMaps, Tensor] | None = None
    trials = settings.trials or max(4, min(8, 32 // maps))
    with progress_bar("fitting", trials * settings.trial_steps + settings.steps) as bar:
        for _ in range(trials):
            model, labels = _initial_model(sample, maps, settings, generator, partitioner)
            _refine(model, cloud, sample, settings.trial_steps, settings, generator, bar, attractor=False)
            score = attractor_chamfer(model, cloud, sample)
            if best is None or score < best[0]:
                best = (score, model, labels)
        assert best is not None
        score, model, labels = best
        model.relax(SIGMA_MAX)  # release the trials' tighter contraction bound (see FitSettings)
        history = _refine(model, cloud, sample, settings.steps, settings, generator, bar, attractor=True, best=score)
    p = map_shares(model, sample)
    return FitResult(ifs=model.ifs(p), labels=labels, history=history)


def _refine(
    model: ContractiveMaps,
    cloud: NearestIndex,
    sample: Tensor,
    steps: int,
    settings: FitSettings,
    generator: torch.Generator,
    bar,
    attractor: bool,
    best: float = float("inf"),
) -> list[float]:
    """Step 3: Adam on the collage Chamfer (and, after a warm-up, the attractor's); returns the collage losses.

    With ``attractor``, the attractor Chamfer is measured every ``check`` steps and the model ends at its
    best measured state (``best``: the score of the starting state): the stochastic steps near the end
    can wander off a good optimum, and a step that lowers the collage can still spread the attractor.
    """
    points = cloud.ref
    n, device = points.shape[0], points.device
    history: list[float] = []
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / max(1, steps))))
    warmup = steps // 4
    walkers: Tensor | None = None
    p = map_shares(model, sample)
    kept = {name: value.clone() for name, value in model.state_dict().items()}
    for step in range(steps):
        # A fresh random subset of the cloud every step: the fit sees all of it, and the sampling
        # error of one fixed subset does not bias the optimum.
        batch = points[torch.randint(n, (settings.sample,), generator=generator).to(device)] if n > settings.sample else points
        images = model(batch)[0].reshape(-1, 3)  # (k n) 3: the collage F(S)
        collage = cover_loss(batch, cloud, images)
        loss = collage
        if attractor and settings.attractor_weight > 0 and step >= warmup:
            if step % 25 == 0:  # the shares move slowly: refresh them now and then, not every step
                p = map_shares(model, sample)
            walkers = _walk(model, p, sample, walkers, settings.depth, generator)
            loss = loss + settings.attractor_weight * cover_loss(batch, cloud, walkers)
            walkers = walkers.detach()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(collage.detach()))
        bar.advance()
        if attractor and ((step + 1) % settings.check == 0 or step + 1 == steps):
            score = attractor_chamfer(model, cloud, sample)
            if score < best:
                best, kept = score, {name: value.clone() for name, value in model.state_dict().items()}
            bar.info(f"attractor {score:.2e} (best {best:.2e})")
        elif step % 20 == 0:
            bar.info(f"collage {history[-1]:.2e}")
    if attractor:
        model.load_state_dict(kept)
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
