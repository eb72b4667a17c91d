"""Learned codecs' shared pieces: training-time quantisation, a factorised Laplace prior, and trained
priors of symbol streams.

The Laplace prior prices latents for the rate term while training; files are coded with the adaptive
tables of :mod:`collagekit.codec` (:func:`~collagekit.codec.encode_latent_groups`). Shapes: ``t``
signals (tiles, segments), ``p`` latent channels, ``k`` range cells.

:class:`StreamPriors` are the starting distributions of a codec's symbol streams at one rate point,
trained (:class:`AdaptiveCodeLength`, through the shared training loop) on the streams the codec writes
for training data: what :func:`collagekit.codec.encode_symbols` codes adaptively instead of storing a
table per stream in every file. Shapes there: ``n`` symbols, ``B`` blocks (the coder's model updates),
``K`` the stream's alphabet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from collagekit.codec import StreamPrior, adaptive_blocks
from collagekit.config import StreamPriorsConfig
from collagekit.errors import CollagekitError


class LaplacePrior(nn.Module):
    """Factorised prior: one Laplace(mu_j, b_j) per latent channel j, integrated over unit bins.

    Its parameters are stored divided by ``SPEED``: with the encoder's learning rate the scales would
    take thousands of steps to shrink, and until they do the rate term prices the many zero latents
    far above their real cost (measured: 4x the coded size).
    """

    SPEED = 10.0

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.full((channels,), -2.0 / self.SPEED))

    def bits(self, y: Tensor) -> Tensor:
        """(t p k) -> (t p k) bits of each value's unit bin."""
        loc = self.SPEED * self.loc[:, None]
        scale = (self.SPEED * self.log_scale).exp()[:, None].clamp(min=1e-3)
        # By symmetry, the bin [-d - 1/2, -d + 1/2] with d = |y - mu| (the side where the CDF is small,
        # so the difference keeps its precision). CDF(x) = exp(x / b) / 2 for x <= 0.
        d = (y - loc).abs()
        lower = 0.5 * torch.exp((-d - 0.5) / scale)
        upper = torch.where(d >= 0.5, 0.5 * torch.exp((0.5 - d).clamp(max=0) / scale), 1 - 0.5 * torch.exp((d - 0.5).clamp(max=0) / scale))
        return -torch.log2((upper - lower).clamp(min=1e-9))


def quantise(y: Tensor, mode: str) -> Tensor:
    """Training-time quantisation: ``noise`` adds U(-1/2, 1/2), ``ste`` rounds with a straight-through
    gradient, ``round`` rounds (no gradient)."""
    if mode == "noise":
        return y + torch.empty_like(y).uniform_(-0.5, 0.5)
    if mode == "ste":
        return y + (torch.round(y) - y).detach()
    return torch.round(y)


class StreamPriors(nn.Module):
    """Per stream of :class:`~collagekit.config.StreamPriorsConfig`: logits over its alphabet and the log
    of the prior's strength (how many symbols the prior weighs as before the stream's own counts)."""

    INIT_STRENGTH = 32.0

    def __init__(self, config: StreamPriorsConfig) -> None:
        super().__init__()
        self.config = config
        self.logits = nn.ParameterDict({name: nn.Parameter(torch.zeros(k)) for name, k in config.streams.items()})
        self.log_strength = nn.ParameterDict({name: nn.Parameter(torch.tensor(math.log(self.INIT_STRENGTH))) for name in config.streams})

    def start_from_counts(self, counts: Mapping[str, Tensor]) -> None:
        """Logits of the smoothed frequencies (half a count added): the static optimum, where training starts."""
        with torch.no_grad():
            for name, c in counts.items():
                self.logits[name].copy_(torch.log(c.double() + 0.5).float())

    def distribution(self, name: str) -> tuple[Tensor, Tensor]:
        """-> (probabilities (K,), strength ()) of one stream."""
        return torch.softmax(self.logits[name], dim=0), self.log_strength[name].exp()

    def priors(self) -> dict[str, StreamPrior]:
        """The coder's priors (float64, renormalised there so that encoder and decoder agree bit for bit)."""
        out = {}
        for name in self.config.streams:
            p = torch.softmax(self.logits[name].detach().double(), dim=0).cpu().numpy()
            try:
                out[name] = StreamPrior(p / p.sum(), float(self.log_strength[name].detach().double().exp()))
            except ValueError:  # weights from a damaged or hostile file: NaN, or a zero or infinite strength
                raise CollagekitError(f"stream prior {name!r} has unusable values (not finite, or a zero probability or strength)") from None
        return out


@dataclass(frozen=True)
class AdaptiveExamples:
    """One stream's symbols from several signals, laid out for :class:`AdaptiveCodeLength`: each symbol's
    block (in the coder's schedule, numbered across signals), and per block the counts and number of
    the symbols before it in its own signal."""

    symbols: Tensor  # (n,) long
    block: Tensor  # (n,) long, into the B blocks
    seen: Tensor  # (B K) float
    start: Tensor  # (B,) float

    @classmethod
    def of(cls, streams: list[np.ndarray], alphabet: int) -> AdaptiveExamples:
        symbols, block, seen, start = [], [], [], []
        blocks = 0
        for x in streams:
            bounds, block_of, counts = adaptive_blocks(x, alphabet)
            symbols.append(x)
            block.append(blocks + block_of)
            seen.append(counts)
            start.append(bounds[:-1])
            blocks += bounds.size - 1
        return cls(
            symbols=torch.from_numpy(np.concatenate([np.zeros(0, np.int64), *symbols]).astype(np.int64)),
            block=torch.from_numpy(np.concatenate([np.zeros(0, np.int64), *block])),
            seen=torch.from_numpy(np.concatenate([np.zeros((0, alphabet), np.int64), *seen]).astype(np.float32)),
            start=torch.from_numpy(np.concatenate([np.zeros(0, np.int64), *start]).astype(np.float32)),
        )


class AdaptiveCodeLength(nn.Module):
    """The objective of :class:`StreamPriors`: the bits the adaptive coder spends on a batch of streams
    (name -> :class:`AdaptiveExamples`), per symbol. Minimising it fits each prior and its strength to
    what adaptive coding costs, not only to the streams' pooled frequencies."""

    def __init__(self, model: StreamPriors) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, AdaptiveExamples]) -> tuple[Tensor, dict[str, Tensor]]:
        device = next(self.model.parameters()).device
        bits = torch.zeros((), device=device)
        n = 0
        for name, ex in batch.items():
            if ex.symbols.numel() == 0:
                continue
            p, strength = self.model.distribution(name)
            model = (strength * p + ex.seen.to(device)) / (strength + ex.start.to(device))[:, None]  # (B K)
            bits = bits - torch.log2(model[ex.block.to(device), ex.symbols.to(device)]).sum()
            n += ex.symbols.numel()
        loss = bits / max(n, 1)
        return loss, {"bits_per_symbol": loss.detach()}
