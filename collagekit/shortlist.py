"""Amortized collage search: a network's short candidate list per range, an exact pick from it.

The exhaustive search (:mod:`collagekit.search`) compares every range cell with every source of its
level: ``m * S`` pairs, which grows with the square of the signal's size (a 768 x 512 image has ~1e9
pairs at its 4 x 4 cells). A :class:`Shortlist` sorts blocks into ``K`` classes with one forward pass
of a small network per cell size, trained (:class:`ShortlistObjective`) so that a range and the source
the exhaustive search picks for it share a class, and so that the classes split the pairs evenly. The
search then compares each range exactly (least squares, clamped, as before) only with the sources of
its ``probes`` most likely classes: an inverted file whose lists were learned, about ``probes / K`` of
the pairs. Cell sizes without a network are searched exhaustively.

A block's class must not depend on its mean or scale (the code's bias and weight absorb both), nor on
its sign (weights may be negative): the network sees the centred block scaled to unit norm, and its
logits are ``g(u) + g(-u)`` (``sign: sum``, two passes) or start from ``|W u|``, a first layer without
bias whose magnitudes ignore the sign (``sign: abs``, one pass: half the cost of every block's class).

Shapes: ``n`` blocks, ``r`` samples per block, ``K`` classes, ``b`` probes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from collagekit.config import ShortlistConfig

EPS = 1e-6
CHUNK = 1 << 14  # blocks per forward pass: the hidden activations stay a few MB however large the signal


def unit_blocks(blocks: Tensor) -> Tensor:
    """(n r) -> centred, unit-norm (n r) (flat blocks stay 0)."""
    centred = blocks - blocks.mean(-1, keepdim=True)
    return centred / centred.norm(dim=-1, keepdim=True).clamp_min(EPS)


class Magnitude(nn.Module):
    """``|x|``: the first activation of a ``sign: abs`` network (even in the block)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.abs()


class Shortlist(nn.Module):
    """One classifier per cell size: ``logits(blocks (n r)) -> (n K)``."""

    def __init__(self, cfg: ShortlistConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.nets = nn.ModuleDict({str(r): self._net(r, cfg) for r in cfg.samples})

    @staticmethod
    def _net(r: int, cfg: ShortlistConfig) -> nn.Sequential:
        """Three linear layers; for ``sign: abs`` the first has no bias and its magnitudes are the first
        activation (an even function of the block)."""
        if cfg.sign == "abs":
            first: list[nn.Module] = [nn.Linear(r, cfg.hidden, bias=False), Magnitude()]
        else:
            first = [nn.Linear(r, cfg.hidden), nn.GELU()]
        return nn.Sequential(*first, nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.classes))

    def covers(self, samples: int) -> bool:
        return str(samples) in self.nets

    def logits(self, blocks: Tensor) -> Tensor:
        u = unit_blocks(blocks)
        net = self.nets[str(blocks.shape[-1])]
        return net(u) if self.cfg.sign == "abs" else net(u) + net(-u)

    @torch.no_grad()
    def lists(self, ranges: Tensor, sources: Tensor, probes: int) -> tuple[Tensor, Tensor]:
        """(m r) ranges, (S r) sources -> each range's ``probes`` most likely classes (m b), each source's class (S,)."""
        probes = min(probes, self.cfg.classes)
        listed = torch.cat([self.logits(part).topk(probes, -1).indices for part in ranges.split(CHUNK)])
        return listed, torch.cat([self.logits(part).argmax(-1) for part in sources.split(CHUNK)])


class ShortlistObjective(nn.Module):
    """``forward(batch) -> (loss, metrics)`` for :func:`collagekit.training.train`.

    A batch holds, per cell size ``r``, ``ranges`` (n r), the source the exhaustive search picked for
    each (``matches``, n r) and sources drawn at random (``sources``, n r). The loss is the negative log
    probability that a range and its match share a class, plus ``lmbda`` times the expected share of
    pairs one probe compares, times ``K`` (1 when the classes split them evenly): the search's cost.
    The metrics, with ``probes`` classes listed per range: ``recall<r>``, the share of ranges whose
    match is listed, and ``compared<r>``, the share of all pairs the search compares.
    """

    def __init__(self, shortlist: Shortlist, lmbda: float, probes: int) -> None:
        super().__init__()
        self.shortlist = shortlist
        self.lmbda = lmbda
        self.probes = probes  # for the metrics: recall and compared share as the search would see them

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        k = self.shortlist.cfg.classes
        loss = next(self.shortlist.parameters()).new_zeros(())
        batch = {name: blocks.to(loss.device) for name, blocks in batch.items()}
        metrics: dict[str, Tensor] = {}
        for r in self.shortlist.cfg.samples:
            p = self.shortlist.logits(batch[f"ranges.{r}"]).softmax(-1)  # (n K)
            q = self.shortlist.logits(batch[f"matches.{r}"]).softmax(-1)
            s = self.shortlist.logits(batch[f"sources.{r}"]).softmax(-1)
            together = -torch.log((p * q).sum(-1) + EPS).mean()
            cost = k * (p.mean(0) * s.mean(0)).sum()
            loss = loss + together + self.lmbda * cost
            with torch.no_grad():
                listed = p.topk(min(self.probes, k), -1).indices
                metrics[f"recall{r}"] = (listed == q.argmax(-1, keepdim=True)).any(-1).float().mean()
                hard_p = torch.bincount(listed.reshape(-1), minlength=k).float() / p.shape[0]
                hard_s = torch.bincount(s.argmax(-1), minlength=k).float() / s.shape[0]
                metrics[f"compared{r}"] = (hard_p * hard_s).sum()  # share of all pairs the search compares
        return loss, metrics
