"""Point-cloud partitioners: split a cloud into K cells, one per map of the IFS.

Shapes in einops notation: ``n`` points, ``k`` cells.

These are not :class:`collagekit.interfaces.Partitioner` subclasses. That interface cuts *grid* signals
into equal-size range cells that tile an array and merge back exactly (``ranges``/``merge``/``domains``
with ``(b c *spatial)`` tensors); a point set has no grid, its cells have different sizes, and the
domain is always the whole cloud. So a point-cloud partitioner is a plain pydantic-configured component
of the ``pointcloud_fractalize`` task (``partitioner: {name: kmeans}``), selected by its ``name``
literal like every other component, without bending the grid interface. The module imports torch only
inside ``split``, so the task's Config validates without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class KMeans(BaseModel):
    """Lloyd's k-means with k-means++ seeding: compact cells, the natural pieces of a self-similar set."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["kmeans"] = "kmeans"
    iterations: int = Field(30, ge=1, le=1000, description="Lloyd iterations")

    def split(self, points: Tensor, k: int, generator: torch.Generator) -> Tensor:
        """(n 3) -> (n,) cell index in [0, k); every cell is non-empty when n >= k."""
        import torch

        from collagekit_pointcloud.chamfer import nearest

        n = points.shape[0]
        first = int(torch.randint(n, (1,), generator=generator))
        centres = [points[first]]
        d2 = ((points - centres[0]) ** 2).sum(-1)
        for _ in range(1, k):
            # k-means++: the next centre is drawn with probability proportional to the squared distance.
            weights = d2.cpu().double()
            pick = int(torch.multinomial(weights / weights.sum(), 1, generator=generator)) if weights.sum() > 0 else 0
            centres.append(points[pick])
            d2 = torch.minimum(d2, ((points - points[pick]) ** 2).sum(-1))
        c = torch.stack(centres)
        labels = nearest(points, c)[1]
        for _ in range(self.iterations):
            sums = torch.zeros_like(c).index_add_(0, labels, points)
            counts = torch.bincount(labels, minlength=k).to(points.dtype)
            # An empty cell keeps its centre; it is refilled below if it stays empty.
            c = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], c)
            new = nearest(points, c)[1]
            if torch.equal(new, labels):
                break
            labels = new
        return _fill_empty(labels, points, k)


class Octree(BaseModel):
    """Recursive halving of the largest cell along its longest axis (a kd/octree split) until k cells."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["octree"] = "octree"

    def split(self, points: Tensor, k: int, generator: torch.Generator) -> Tensor:
        import torch

        labels = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
        for new in range(1, k):
            counts = torch.bincount(labels, minlength=new)
            big = int(torch.argmax(counts))
            mask = labels == big
            cell = points[mask]
            axis = int(torch.argmax(cell.amax(0) - cell.amin(0)))
            median = cell[:, axis].median()
            upper = mask.clone()
            upper[mask] = cell[:, axis] > median
            if not upper.any() or bool(upper[mask].all()):  # all equal along the axis: split by order
                idx = mask.nonzero()[:, 0]
                upper = torch.zeros_like(mask)
                upper[idx[len(idx) // 2 :]] = True
            labels[upper] = new
        return _fill_empty(labels, points, k)


def _fill_empty(labels: Tensor, points: Tensor, k: int) -> Tensor:
    """Give every empty cell one point from the largest cell, so that every map has something to cover."""
    import torch

    for cell in range(k):
        counts = torch.bincount(labels, minlength=k)
        if counts[cell] == 0:
            donor = int(torch.argmax(counts))
            labels[(labels == donor).nonzero()[0, 0]] = cell
    return labels


PointPartitioner = Annotated[KMeans | Octree, Field(discriminator="name")]
