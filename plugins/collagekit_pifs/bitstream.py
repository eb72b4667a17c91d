"""PIFS codes <-> named integer streams for :mod:`collagekit.codec`, with every count checked.

Per channel ``c``: ``c{c}.split`` (quadtree flags, breadth first, no flags at the minimum size),
``c{c}.s`` and ``c{c}.o`` (every leaf, level by level), ``c{c}.t`` (the transform of every leaf with
s != 0) and ``c{c}.d{r}`` (its domain index, one stream per range size ``r``, whose alphabet is that
level's number of domains). The decoder re-derives every stream's expected length from the split
flags, so a file whose counts disagree is rejected before anything is built from it.
"""

from __future__ import annotations

import numpy as np
import torch

from collagekit.errors import CollagekitError
from collagekit_pifs import transforms
from collagekit_pifs.encoder import ChannelCode, Level
from collagekit_pifs.params import PifsParams


def alphabets(params: PifsParams, channels: int, padded: tuple[int, int], top: int) -> dict[str, int]:
    names: dict[str, int] = {}
    for c in range(channels):
        names[f"c{c}.split"] = 2
        names[f"c{c}.s"] = params.s_levels
        names[f"c{c}.o"] = params.o_levels
        names[f"c{c}.t"] = transforms.COUNT
        for r in (r for r in params.sizes() if r <= top):
            rows, cols = params.domain_grid(r, padded)
            names[f"c{c}.d{r}"] = max(1, rows * cols)
    return names


def pack(codes: list[ChannelCode], params: PifsParams) -> dict[str, np.ndarray]:
    streams: dict[str, np.ndarray] = {}
    for c, code in enumerate(codes):
        def cat(values) -> np.ndarray:
            values = list(values)
            return torch.cat(values).numpy().astype(np.int64) if values else np.zeros(0, np.int64)

        used = [lv.s != params.s_zero for lv in code.levels]
        streams[f"c{c}.split"] = cat(lv.split.long() for lv in code.levels)
        streams[f"c{c}.s"] = cat(lv.s for lv in code.levels)
        streams[f"c{c}.o"] = cat(lv.o for lv in code.levels)
        streams[f"c{c}.t"] = cat(lv.transform[u] for lv, u in zip(code.levels, used))
        for lv, u in zip(code.levels, used):
            streams[f"c{c}.d{lv.size}"] = lv.domain[u].numpy().astype(np.int64)
    return streams


def unpack(
    streams: dict[str, np.ndarray], params: PifsParams, channels: int, padded: tuple[int, int], top: int
) -> list[ChannelCode]:
    """Streams (already checked against :func:`alphabets`) -> per-channel codes."""

    def bad(why: str) -> CollagekitError:
        return CollagekitError(f"corrupt .clg file: PIFS code {why}")

    sizes = [r for r in params.sizes() if r <= top]
    top_count = (padded[0] // top) * (padded[1] // top)
    codes = []
    for c in range(channels):
        split_all = torch.from_numpy(streams[f"c{c}.split"])
        s_all = torch.from_numpy(streams[f"c{c}.s"])
        o_all = torch.from_numpy(streams[f"c{c}.o"])
        t_all = torch.from_numpy(streams[f"c{c}.t"])
        if o_all.numel() != s_all.numel():
            raise bad(f"channel {c}: {s_all.numel()} contrasts but {o_all.numel()} brightnesses")
        ps = pl = pt = 0
        nodes = top_count
        code = ChannelCode()
        for r in sizes:
            if r == sizes[-1]:
                split = torch.zeros(0, dtype=torch.bool)
                leaves = nodes
            else:
                if ps + nodes > split_all.numel():
                    raise bad(f"channel {c}: the quadtree flags end early")
                split = split_all[ps : ps + nodes].bool()
                ps += nodes
                leaves = nodes - int(split.sum())
            if pl + leaves > s_all.numel():
                raise bad(f"channel {c}: fewer block codes than the quadtree has blocks")
            s, o = s_all[pl : pl + leaves], o_all[pl : pl + leaves]
            pl += leaves
            used = s != params.s_zero
            count = int(used.sum())
            d_stream = torch.from_numpy(streams[f"c{c}.d{r}"])
            if d_stream.numel() != count or pt + count > t_all.numel():
                raise bad(f"channel {c}: the domain or transform count at size {r} does not match the blocks")
            rows, cols = params.domain_grid(r, padded)
            if count and rows * cols == 0:
                raise bad(f"channel {c}: size-{r} blocks refer to domains the image does not have")
            transform = torch.zeros(leaves, dtype=torch.long)
            domain = torch.zeros(leaves, dtype=torch.long)
            transform[used], domain[used] = t_all[pt : pt + count], d_stream
            pt += count
            code.levels.append(Level(r, split, s, o, transform, domain))
            nodes = 4 * (int(split.sum()) if split.numel() else 0)
        if ps != split_all.numel() or pl != s_all.numel() or pt != t_all.numel():
            raise bad(f"channel {c}: the streams are longer than the quadtree needs")
        codes.append(code)
    return codes
