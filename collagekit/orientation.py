"""Canonical orientations: compare each range with each domain in one variant, not all of them.

A collage whose signal-dependent auxiliaries turn every domain (the 8 rotations and flips of an image
cell, a reversal of a clip's) offers ``u`` variants of each of ``n`` domains, and the exhaustive search
compares a range with all ``u * n``. Where the variants form a group, every block has a *canonical*
variant, a function of its orbit alone: the variant whose energy lies furthest along a fixed direction
(``key``; its tilt ``tan(pi / 8)`` per axis puts the 8 dihedral images of the direction 45 degrees
apart, so ties are rare). A variant of a domain that matches a range is then, up to noise, the domain's
canonical variant matching the range's canonical variant; so the search compares canonical ranges with
canonical domains, ``n`` sources instead of ``u * n``, and turns the pick back into the variant it
stands for (:meth:`Orientations.source`). Energy, not value, decides, so a block and its negative
share their canonical variant (weights may be negative). Near ties make a range's canonical variant
unstable: :meth:`Orientations.ranked` gives its ``k`` best candidates, each searched, the best kept
(Fisher's classification of blocks by quadrant brightness, which fixes the orientation before the
search, is the classical form of this).

Shapes: ``u`` variants (the identity first), ``n`` domains, ``m`` blocks, ``r`` samples per block,
``k`` orientations tried per range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from collagekit.errors import CollagekitError

TILT = math.tan(math.pi / 8)  # the key's weight ratio between consecutive axes


def key(size: tuple[int, ...]) -> Tensor:
    """(r,) the direction a block's energy is measured along: ``sum_a TILT^a * (x_a - centre_a)``."""
    axes = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) - (s - 1) / 2 for s in size), indexing="ij")
    return sum(TILT**a * x for a, x in enumerate(axes)).reshape(-1)


@dataclass(frozen=True)
class Orientations:
    """The variants of one cell size as a group: ``perm`` (u r) (block_v = block[perm_v]), ``key`` (r,)
    and ``compose`` (u u): the variant ``c`` with ``perm_c = perm_b o perm_a^-1`` at ``[b, a]``."""

    perm: Tensor
    key: Tensor
    compose: Tensor

    @classmethod
    def of(cls, perm: Tensor, size: tuple[int, ...]) -> Orientations:
        """(u r) permutations of a cell of ``size`` -> their orientations; an error unless they form a
        group (with the identity first)."""
        perm = perm.long()
        u, r = perm.shape
        if not torch.equal(perm[0], torch.arange(r)):
            raise CollagekitError("canonical orientations need the identity as the first variant")
        rows = {tuple(p.tolist()): v for v, p in enumerate(perm)}
        inverse = perm.argsort(-1)  # (u r)
        compose = torch.empty(u, u, dtype=torch.long)
        for b in range(u):
            for a in range(u):
                c = rows.get(tuple(perm[b][inverse[a]].tolist()))
                if c is None:
                    raise CollagekitError("canonical orientations need variants that form a group (a rotation's inverse among them)")
                compose[b, a] = c
        return cls(perm, key(size).to(torch.float32), compose)

    def canonical(self, variants: Tensor) -> Tensor:
        """(u n r) every variant of n centred blocks -> (n,) the variant of each that is canonical."""
        return ((variants * variants) @ self.key.to(variants)).argmax(0)

    def ranked(self, blocks: Tensor, k: int) -> Tensor:
        """(m r) centred blocks -> (m k) their ``k`` likeliest canonical variants, best first."""
        turned = blocks[:, self.perm.to(blocks.device)]  # (m u r)
        return ((turned * turned) @ self.key.to(blocks)).topk(min(k, self.perm.shape[0]), -1).indices

    def turn(self, blocks: Tensor, variant: Tensor) -> Tensor:
        """(m r) blocks, (m,) a variant of each -> (m r) those variants."""
        return blocks.gather(1, self.perm.to(blocks.device)[variant])

    def source(self, domain: Tensor, domain_variant: Tensor, range_variant: Tensor, domains: int) -> Tensor:
        """A range's variant ``a`` matched a domain's variant ``b`` -> the source id (``c * n + d``) of the
        domain's variant that matches the range as it is."""
        return self.compose.to(domain.device)[domain_variant, range_variant] * domains + domain
