"""The ``sparse-collage`` codec: an image as the core's adaptive, sparse collage, found by the core's
least-squares search (:mod:`collagekit.search`) and entropy-coded.

Encode: RGB -> YCbCr (:mod:`collagekit.colour`), chroma at half resolution (option ``chroma``). Each
plane group (luma; the two chroma planes) is one sparse collage over a quadtree of range cells
(``range_size`` down ``levels`` levels), each range naming ``sources`` domains (twice its size,
``domain_stride`` range sizes apart, optionally turned by the 8 dihedral transforms) with weights on a
lattice of ``weight_levels`` steps each side of 0 up to the contraction, and one bias on a lattice of
``bias_step`` grey levels. The search rounds every candidate code to these lattices (the bias refitted
to the rounded weights), and the quadtree is cut to minimise ``D + lmbda * R``: squared error in 8-bit
units, weighted by what each plane's error costs in RGB, plus the estimated bits, re-estimated twice
from the streams of the previous cut. A range whose weights are all 0 is *flat* and names no domain.
By default each range is compared only with the sources of the classes the shipped shortlist network
lists for it (``search``, ``probes``), and the search goes no deeper under a cell whose best code errs
by at most ``lmbda * prune_bits`` (splitting it would have to pay for four children's codes). Before
fitting the deblocking filter the encoder decodes its own code, starting from the image, to a tolerance
of its own (``deblock_tol``).
Decode: the core solver to the fixed point (chroma at twice the scale when it was halved), then the
optional fitted deblocking filter (:mod:`collagekit.deblock`) at the smallest range's borders.

Container header (besides the container's own fields)::

    {"codec": "sparse-collage", "modality": "image",
     "image": {"channels": 1 | 3, "spatial": [h, w]},
     "preset": 1,                                      # the settings of PRESETS[1]; or, spelled out:
     "collage": {"range_size", "levels", "domain_stride", "dihedral", "sources", "weight_levels",
                 "contraction", "bias_step"},          # bias_step in 8-bit grey levels
     "chroma": "half" | "full",
     "solver": {"tol", "max_iter"},
     "prior": N | {"name", "version", "sha256"}}       # optional: the stream priors (SHIPPED_PRIORS[N])

and one uint8 tensor ``streams`` (:func:`collagekit.codec.encode_symbols`): per plane group ``g`` (``y``,
``c``), ``gs<l>`` the split flags of level l, ``gw`` every leaf's weight symbols (level by level),
``gi<l>`` the source indices of level l's non-zero weights, ``gb`` the bias integers minus their least,
``h`` each group's least bias integer and span, and (when the filter is on) ``d`` the deblocking
strengths, per channel, plus their limit. Files written before 2026-12-07 hold the strengths in the
header (``"deblock": [[6 integers], ...]``) and still decode.

With ``prior`` (by default for the default settings: the shipped set trained at the lmbda nearest the
file's, ``-O prior=``) the streams are coded adaptively from trained priors (:mod:`collagekit.prior`,
the ``sparse_collage_prior_train`` recipe) instead of storing a table each, and their layout is fixed,
so the bytes carry no stream names or alphabets: per group ``gs<l>``, ``gw<l>`` the weight symbols of
level l, ``gi<l>``, ``gbf`` / ``gbn`` the bias integers plus the bound of the flat / the named ranges;
then ``d`` (empty without the filter).

The header is small on purpose: on a 142 x 129 image each 100 bytes are 0.04 bpp. The codec's default
settings and the shipped priors are named by numbers rather than spelled out (about 300 bytes less,
escaped JSON inside the container's own), and the strengths are range-coded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from collagekit import budget, sparse, tree
from collagekit import deblock as deblocking
from collagekit.budget import CollageGeometry, collage_decode_bytes, collage_fit_bytes
from collagekit.codec import StreamPrior, as_tensor, decode_symbols, encode_symbols, from_tensor
from collagekit.colour import YCBCR_TO_RGB, rgb_to_ycbcr, ycbcr_to_rgb
from collagekit.config import parse_options
from collagekit.container import Container, header_int, header_number, header_shape
from collagekit.errors import CollagekitError
from collagekit.fit import FitSettings, refine
from collagekit.grid import AveragePooler
from collagekit.gridcodec import solve_grid
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.operator import GridCollage
from collagekit.registry import plugin_versions
from collagekit.search import Quantiser, RateModel, SearchTree, search_tree
from collagekit.solver import Picard
from collagekit.sparse import SparseParams
from collagekit_image.components import Dihedral, ImageTiles
from collagekit_image.config import (
    SparseCollageDecodeOptions,
    SparseCollageEncodeOptions,
)
from collagekit_image.imageio import codec_input_size
from collagekit_image.pretrained import PRIORS, SHORTLISTS

NAME = "sparse-collage"
DEFAULT_SOLVER = {"tol": 1e-4, "max_iter": 200}
GREY = 255.0  # 8-bit units: lmbda and bias_step are given in grey levels
RATE_PASSES = 3  # cuts per plane group: the first with guessed rates, each next with the last one's
COLLAGE_KEYS = ("range_size", "levels", "domain_stride", "dihedral", "sources", "weight_levels", "contraction", "bias_step")
BIAS_SPAN = 2.0  # |bias| < 2: range and domain means lie in [0, 1] and |weights| < 1
# Settings a header names by number. Frozen: a file naming preset N decodes with these forever, so
# new defaults get a new number, never an edit.
PRESETS: dict[int, dict[str, Any]] = {
    1: {
        "collage": {"range_size": 16, "levels": 3, "domain_stride": 2, "dihedral": True, "sources": 1, "weight_levels": 7, "contraction": 0.95, "bias_step": 4.0},
        "chroma": "half",
        "solver": {"tol": 1e-4, "max_iter": 200},
    },
}
# The shipped stream priors a header names by number (``"prior": N``): name, the lmbda they were trained
# at, and the SHA-256 prefix of the weights. Frozen like the presets: a retrained set gets new numbers.
SHIPPED_PRIORS: dict[int, tuple[str, float, str]] = {
    1: ("sc-l6400", 6400.0, "2c28040d9873dff3"),
    2: ("sc-l2500", 2500.0, "36c4999b1409986f"),
    3: ("sc-l1000", 1000.0, "4f09449d3081bea1"),
    4: ("sc-l400", 400.0, "49b97e16450a765c"),
    5: ("sc-l160", 160.0, "f6a45703fc11a75c"),
    6: ("sc-l64", 64.0, "647ba52902d6b0cf"),
    7: ("sc-l24", 24.0, "c07e92d9bdc01e50"),
    8: ("sc-l10", 10.0, "d197cd53bd4c2d00"),
}
REFINE_LR = 0.5  # the first step: this fraction of the Newton step the one-step map's curvature gives


def lmbda_for_quality(quality: int) -> float:
    """Quality 0..100 -> lmbda: 4096 grey levels^2 per bit at 0, halving every 10 (4 at 100)."""
    if not 0 <= quality <= 100:
        raise CollagekitError(f"{NAME} quality must be in [0, 100], got {quality}")
    return 4096.0 * 2.0 ** (-quality / 10.0)


@dataclass(frozen=True)
class Layout:
    """What the file's header fixes: the collage of each plane group and the quantisers."""

    range_size: int
    levels: int
    domain_stride: int
    dihedral: bool
    sources: int
    weight_levels: int
    contraction: float
    bias_step: float  # grey levels

    def collage(self) -> GridCollage:
        top = self.range_size
        part = ImageTiles(range_size=top, levels=self.levels, domain_size=2 * top, domain_stride=self.domain_stride * top)
        aux = [Dihedral()] if self.dihedral else []
        return GridCollage(part, AveragePooler(), aux, contraction=self.contraction, mixing="sparse", sources=self.sources)

    def quantiser(self) -> Quantiser:
        return Quantiser(self.contraction / self.weight_levels, self.bias_step / GREY)

    @property
    def symbols(self) -> int:
        return 2 * self.weight_levels + 1

    def bias_bound(self) -> int:
        """Bias integers lie in [-bound, bound] (biases in (-1, 2))."""
        return math.ceil(BIAS_SPAN / self.quantiser().bias_step) + 1

    def header(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in COLLAGE_KEYS}


def plane_groups(x: Tensor, chroma: str) -> list[tuple[str, Tensor, int]]:
    """(1 c h w) YCbCr or grey -> (name, planes (1 p h' w'), scale to full resolution) per plane group."""
    if x.shape[1] == 1:
        return [("y", x, 1)]
    c = x[:, 1:]
    if chroma == "half":
        c = F.avg_pool2d(sparse.pad_to(c, tuple(s + s % 2 for s in c.shape[2:])), 2)
        return [("y", x[:, :1], 1), ("c", c, 2)]
    return [("y", x[:, :1], 1), ("c", c, 1)]


def _full(image: Tensor, group: str) -> Tensor:
    """(1 c h w) YCbCr or grey -> a plane group's planes at full resolution (1 p h w)."""
    return image[:, :1] if group == "y" else image[:, 1:]


def _chroma_weight(factor: int) -> float:
    """What a unit of squared error in a chroma sample costs in squared RGB error (summed over pixels,
    mean over the 3 channels), against 1 for luma: the colour transform's weight of Cb and Cr (their
    mean), times the ``factor^2`` pixels each sample spreads over."""
    cb, cr = ((YCBCR_TO_RGB.float() ** 2).sum(0) / 3)[1:].tolist()
    return factor**2 * (cb + cr) / 2


def _leaf_counts(split: tuple[Tensor, ...], collage: GridCollage, planes: int, spatial: tuple[int, ...]) -> list[int]:
    part = collage.partitioner
    return [len(c) for c in tree.leaves(split, planes, part.range_grid(spatial), part.range_size(1), part.levels)]


def _symbols(params: SparseParams, layout: Layout, counts: list[int]) -> tuple[Tensor, list[Tensor], Tensor]:
    """A code -> weight symbols (m j) in [0, 2Z], per level the indices of its non-zero weights, bias integers (m,)."""
    q = layout.quantiser()
    w = sparse.effective_weights(params.weight, layout.contraction)
    symbol = ((w / q.weight_step).round().long() + layout.weight_levels).clamp(0, layout.symbols - 1)
    named = symbol != layout.weight_levels
    index, first = [], 0
    for count in counts:
        rows = slice(first, first + count)
        index.append(params.index[rows][named[rows]])
        first += count
    return symbol, index, (params.bias / q.bias_step).round().long()


def _bits(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    """(alphabet,) estimated bits of each symbol from its count in ``symbols`` (half a count added)."""
    counts = np.bincount(symbols, minlength=alphabet) + 0.5
    return -np.log2(counts / counts.sum())


def _rate(params: SparseParams | None, layout: Layout, sources: list[int], counts: list[int], contexts: bool) -> RateModel:
    """The rate model of the next cut: from the last cut's symbols, or (None) a first guess; with
    ``contexts`` (the streams of a file coded with priors) the biases of flat and of named ranges apart."""
    index_bits = tuple(math.log2(s) for s in sources)
    if params is None:
        return RateModel(torch.full((layout.symbols,), math.log2(layout.symbols)), index_bits, 6.0)
    symbol, _, bias = _symbols(params, layout, counts)
    weight_bits = torch.from_numpy(_bits(symbol.reshape(-1).numpy(), layout.symbols)).float()
    flags = torch.cat(params.split).long().numpy() if params.split else np.zeros(0, dtype=np.int64)
    split_bits = float(_bits(flags, 2)[flags].mean()) if flags.size else 1.0
    if not contexts:
        return RateModel(weight_bits, index_bits, _mean_bits(bias), split_bits)
    flat = (symbol == layout.weight_levels).all(-1)
    return RateModel(weight_bits, index_bits, _mean_bits(bias[~flat]), split_bits, flat_bias_bits=_mean_bits(bias[flat]))


def _mean_bits(values: Tensor) -> float:
    """Mean estimated bits of integers coded by their own frequencies (6 when there are none)."""
    if values.numel() == 0:
        return 6.0
    v = (values - values.min()).numpy()
    return float(_bits(v, int(v.max()) + 1)[v].mean())


def encode_group(found: SearchTree, layout: Layout, spatial: tuple[int, ...], lmbda: float, contexts: bool) -> SparseParams:
    """A plane group's searched tree -> its code, cut at ``lmbda`` (signal units^2 per bit) with the
    rates re-estimated from each cut (``contexts``: as the streams of a file coded with priors)."""
    collage = found.collage
    sources = [sparse.level_sources(collage, spatial, level) for level in range(layout.levels)]
    params: SparseParams | None = None
    for _ in range(RATE_PASSES):
        counts = _leaf_counts(params.split, collage, found.planes, spatial) if params is not None else []
        params = found.cut(lmbda=lmbda, rate=_rate(params, layout, sources, counts, contexts))
    assert params is not None
    return params


def refine_group(params: SparseParams, layout: Layout, target: Tensor, factor: int, steps: int) -> SparseParams:
    """A cut code -> the code after ``steps`` gradient steps on its weights and biases (layout and sources
    kept, values on the file's lattices) against the decoded planes' squared error: ``target`` (1 p H W)
    is the group's planes at full resolution, the code decoded at ``factor`` (2: half-resolution chroma)."""
    target = sparse.pad_to(target, tuple(factor * math.ceil(s / factor) for s in target.shape[2:]))
    solver = Picard(tol=DEFAULT_SOLVER["tol"], max_iter=DEFAULT_SOLVER["max_iter"], backward_tol=DEFAULT_SOLVER["tol"])
    settings = FitSettings(steps=steps, collage_steps=0, lr=REFINE_LR)
    refined, _ = refine(target, layout.collage(), solver, params, settings, layout.quantiser(), scale=factor)
    return refined


def pack_streams(
    codes: dict[str, SparseParams],
    layout: Layout,
    shapes: dict[str, tuple[int, tuple[int, ...]]],
    deblock: list[list[int]] | None = None,
    priors: dict[str, StreamPrior] | None = None,
) -> bytes:
    """Plane group -> code, (planes, spatial), the deblocking strengths per channel (None: no filter) and
    the trained stream priors (None: the layout without them) -> the entropy-coded streams."""
    contexts = priors is not None
    streams, alphabets = code_streams(codes, layout, shapes, contexts)
    if deblock is not None or contexts:  # with priors the layout is fixed: no filter is an empty stream
        strengths = torch.tensor(deblock or [], dtype=torch.long).reshape(-1)
        streams["d"], alphabets["d"] = strengths + deblocking.LIMIT, 2 * deblocking.LIMIT + 1
    return encode_symbols(streams, alphabets, priors, described=not contexts)


def code_streams(
    codes: dict[str, SparseParams], layout: Layout, shapes: dict[str, tuple[int, tuple[int, ...]]], contexts: bool
) -> tuple[dict[str, Tensor], dict[str, int]]:
    """The codes' symbol streams and alphabets (see the module docstring); ``contexts``: the layout of files
    coded with trained priors, where weights go by level and biases by whether their range is flat."""
    collage = layout.collage()
    streams: dict[str, Tensor] = {}
    alphabets: dict[str, int] = {}
    heads: list[int] = []
    bound = layout.bias_bound()
    for g, params in codes.items():
        planes, spatial = shapes[g]
        counts = _leaf_counts(params.split, collage, planes, spatial)
        for level, flags in enumerate(params.split):
            streams[f"{g}s{level}"], alphabets[f"{g}s{level}"] = flags.long(), 2
        symbol, index, bias = _symbols(params, layout, counts)
        if contexts:
            for level, rows in enumerate(symbol.split(counts)):
                streams[f"{g}w{level}"], alphabets[f"{g}w{level}"] = rows.reshape(-1), layout.symbols
        else:
            streams[f"{g}w"], alphabets[f"{g}w"] = symbol.reshape(-1), layout.symbols
        for level, ids in enumerate(index):
            streams[f"{g}i{level}"], alphabets[f"{g}i{level}"] = ids, sparse.level_sources(collage, spatial, level)
        lo, hi = int(bias.min()), int(bias.max())
        if not -bound <= lo <= hi <= bound:
            raise CollagekitError(f"a bias integer lies outside [{-bound}, {bound}]: the search's code is not bounded as it should be")
        if contexts:
            flat = (symbol == layout.weight_levels).all(-1)
            for key, rows in (("bf", flat), ("bn", ~flat)):
                streams[f"{g}{key}"], alphabets[f"{g}{key}"] = bias[rows] + bound, 2 * bound + 1
        else:
            streams[f"{g}b"], alphabets[f"{g}b"] = bias - lo, hi - lo + 1
            heads += [lo + bound, hi - lo]
    if not contexts:
        streams["h"], alphabets["h"] = torch.tensor(heads, dtype=torch.long), 2 * bound + 1
    return streams, alphabets


def unpack_streams(
    data: bytes, layout: Layout, shapes: dict[str, tuple[int, tuple[int, ...]]], channels: int, priors: dict[str, StreamPrior] | None = None
) -> tuple[dict[str, SparseParams], list[list[int]] | None]:
    """Inverse of :func:`pack_streams` -> (codes, deblocking strengths or None); every inconsistency is a
    one-line error naming the file corrupt."""

    def bad(why: str) -> CollagekitError:
        return CollagekitError(f"corrupt .clg file: {why}")

    collage = layout.collage()
    part = collage.partitioner
    bound = layout.bias_bound()
    j = layout.sources
    # Bounds before anything is allocated: every cell of every full tree once, each with its flag, j
    # weights and j indices and a bias.
    full = sum(p * math.prod(part.range_grid(s)) for p, s in shapes.values()) * sum(4**level for level in range(layout.levels))
    limit = full * (2 * j + 2) + 2 * len(shapes) + channels * deblocking.STRENGTHS
    contexts = priors is not None
    weights = [f"w{level}" for level in range(layout.levels)] if contexts else ["w"]
    biases = ["bf", "bn"] if contexts else ["b"]
    if contexts:  # the streams are not named in the bytes: their order and alphabets are these
        expected = {}
        for g, (_, spatial) in shapes.items():
            expected.update({f"{g}s{level}": 2 for level in range(layout.levels - 1)})
            expected.update({f"{g}{k}": layout.symbols for k in weights})
            expected.update({f"{g}i{level}": sparse.level_sources(collage, spatial, level) for level in range(layout.levels)})
            expected.update({f"{g}{key}": 2 * bound + 1 for key in biases})
        expected["d"] = 2 * deblocking.LIMIT + 1
        decoded = decode_symbols(data, expected, max_symbols=limit, what=f"{NAME} streams", priors=priors)
        if decoded["d"].size == 0:
            del decoded["d"]
    else:
        decoded = decode_symbols(data, None, max_symbols=limit, what=f"{NAME} streams")
        per_group = [*(f"s{level}" for level in range(layout.levels - 1)), "w", *(f"i{level}" for level in range(layout.levels)), "b"]
        if sorted(set(decoded) - {"d"}) != sorted(["h", *(f"{g}{k}" for g in shapes for k in per_group)]):
            raise bad(f"its streams {sorted(decoded)} are not those of this layout")
    deblock = None
    if "d" in decoded:
        values = decoded["d"]
        if values.size != channels * deblocking.STRENGTHS:
            raise bad(f"it holds {values.size} deblocking strengths, not {channels * deblocking.STRENGTHS}")
        deblock = (values.astype(np.int64) - deblocking.LIMIT).reshape(channels, -1).tolist()
        if not all(deblocking.valid(s) for s in deblock):
            raise bad("its deblocking strengths are malformed")
    heads = decoded.get("h", np.zeros(2 * len(shapes), dtype=np.int64))  # with priors the biases need no range
    if heads.size != 2 * len(shapes) or heads.min() < 0 or heads.max() > 2 * bound:
        raise bad("its bias ranges are malformed")
    out = {}
    for n, (g, (planes, spatial)) in enumerate(shapes.items()):
        split = tuple(torch.from_numpy(decoded[f"{g}s{level}"]) for level in range(layout.levels - 1))
        if any(f.numel() and (f.min() < 0 or f.max() > 1) for f in split):
            raise bad("a split flag is not 0 or 1")
        split = tuple(f.bool() for f in split)
        try:
            cells = tree.leaves(split, planes, part.range_grid(spatial), part.range_size(1), part.levels)  # checks the flags fit
        except CollagekitError as exc:
            raise bad(f"plane group {g!r}: {exc}") from None
        counts = [len(c) for c in cells]
        m = sum(counts)
        symbol = torch.from_numpy(np.concatenate([decoded[f"{g}{k}"] for k in weights]))
        if contexts and any(decoded[f"{g}w{level}"].size != count * j for level, count in enumerate(counts)):
            raise bad(f"plane group {g!r}: its weight symbols do not match its levels' ranges")
        if symbol.numel() != m * j or (symbol.numel() and (symbol.min() < 0 or symbol.max() >= layout.symbols)):
            raise bad(f"plane group {g!r} has {m} ranges but {symbol.numel()} weight symbols (or one out of range)")
        symbol = symbol.view(m, j)
        named = symbol != layout.weight_levels
        index = torch.zeros(m, j, dtype=torch.long)
        first = 0
        for level, count in enumerate(counts):
            rows = slice(first, first + count)
            ids = torch.from_numpy(decoded[f"{g}i{level}"])
            if ids.numel() != int(named[rows].sum()):
                raise bad(f"plane group {g!r} level {level} names {int(named[rows].sum())} sources but has {ids.numel()} indices")
            if ids.numel() and (ids.min() < 0 or ids.max() >= sparse.level_sources(collage, spatial, level)):
                raise bad(f"plane group {g!r} level {level} has a source index out of range")
            block = index[rows]
            block[named[rows]] = ids
            index[rows] = block
            first += count
        if contexts:
            flat = ~named.any(-1)
            lo, span = -bound, 2 * bound
            bias = torch.zeros(m, dtype=torch.long)
            for key, rows in (("bf", flat), ("bn", ~flat)):
                values = torch.from_numpy(decoded[f"{g}{key}"]) - bound
                if values.numel() != int(rows.sum()):
                    raise bad(f"plane group {g!r} has {int(rows.sum())} {'flat' if key == 'bf' else 'named'} ranges but {values.numel()} of their biases")
                bias[rows] = values
        else:
            lo, span = int(heads[2 * n]) - bound, int(heads[2 * n + 1])
            bias = torch.from_numpy(decoded[f"{g}b"]) + lo
        if bias.numel() != m or (m and (bias.min() < lo or bias.max() > lo + span)) or lo + span > bound:
            raise bad(f"plane group {g!r} has {m} ranges but {bias.numel()} biases (or one out of range)")
        out[g] = _from_symbols(split, symbol, index, bias, layout)
    return out, deblock


def _from_symbols(split: tuple[Tensor, ...], symbol: Tensor, index: Tensor, bias: Tensor, layout: Layout) -> SparseParams:
    """A code from its file symbols: weight symbols (m j), source indices (m j; 0 where the weight is
    0), bias integers (m,)."""
    q = layout.quantiser()
    m = symbol.shape[0]
    weight = (symbol - layout.weight_levels).float() * q.weight_step
    return SparseParams(
        split=split,
        index=index,
        weight=sparse.raw_weights(weight, layout.contraction),
        const_index=torch.zeros(m, 0, dtype=torch.long),
        aux=torch.zeros(m, 0),
        bias=bias.float() * q.bias_step,
    )


def as_stored(params: SparseParams, layout: Layout, planes: int, spatial: tuple[int, ...]) -> SparseParams:
    """A code as a decoder reads it back from the streams: its values rounded to the file's lattices
    (what :func:`unpack_streams` returns for :func:`pack_streams` of it, without the coding)."""
    counts = _leaf_counts(params.split, layout.collage(), planes, spatial)
    symbol, _, bias = _symbols(params, layout, counts)
    index = torch.where(symbol != layout.weight_levels, params.index, 0)
    return _from_symbols(tuple(params.split), symbol, index, bias, layout)


def _solve(layout: Layout, codes: dict[str, SparseParams], shapes: dict[str, tuple[int, tuple[int, ...]]], factors: dict[str, int],
           spatial: tuple[int, int], scale: int, device: torch.device, tol: float, max_iter: int, image: Tensor | None = None) -> Tensor:  # fmt: skip
    """Codes -> the planes (1 c h*scale w*scale), Y or YCbCr, not clipped; an encoder passes the
    ``image`` (1 c h w, scale 1) it coded, where the iterations start."""
    collage = layout.collage()
    solver = Picard(tol=tol, max_iter=max_iter)
    planes = []
    h, w = spatial[0] * scale, spatial[1] * scale
    for g, params in codes.items():
        count, size = shapes[g]
        start = None if image is None else _full(image, g)
        z, _ = solve_grid(collage, params, solver, (count, *size), factors[g] * scale, device, start=start)  # (1 count H W)
        planes.append(z[..., :h, :w])
    return torch.cat(planes, dim=1)


def search_codes(
    image: Tensor, layout: Layout, opts: SparseCollageEncodeOptions, lmbda: float, contexts: bool
) -> tuple[dict[str, SparseParams], dict[str, tuple[int, tuple[int, ...]]], dict[str, int]]:
    """(1 c h w) YCbCr or grey -> per plane group its code cut at ``lmbda`` (``contexts``: priced as the
    streams of a file coded with priors), (planes, spatial) and scale to full resolution: the search and
    cut of an encode (also what the stream priors are trained on)."""
    if opts.search == "exhaustive" and {"shortlist", "probes"} & opts.model_fields_set:
        raise CollagekitError(f"{NAME}: shortlist and probes choose the candidates of search=shortlist; with search=exhaustive every source is compared")
    if opts.range_size & (opts.range_size - 1) or opts.range_size >> (opts.levels - 1) < 2:
        raise CollagekitError(f"{NAME}: range_size must be a power of two whose {opts.levels} levels end at 2 pixels or more, got {opts.range_size}")
    h, w = image.shape[2:]
    groups = plane_groups(image, opts.chroma)
    for g, planes, factor in groups:
        if not fits(tuple(planes.shape[2:]), opts.range_size):
            raise CollagekitError(f"{NAME}: the image ({w}x{h}) is too small for range_size {opts.range_size} (its domains are twice that); use a smaller range_size")
    # The search of the larger group, then the decode the deblocking filter is fitted on; a refinement
    # holds twice a decode's per-sample buffers at the scale it decodes at (2: halved chroma).
    geometry = {g: CollageGeometry.of_collage(layout.collage(), tuple(planes.shape[2:])) for g, planes, _ in groups}
    search = max(collage_fit_bytes(geometry[g], planes.shape[1], DEFAULT_SOLVER) for g, planes, _ in groups)
    if opts.refine_steps:
        search = max(search, *(2 * collage_decode_bytes(geometry[g], planes.shape[1], factor, {"method": "picard"}) for g, planes, factor in groups))
    budget.check(search, f"searching a {w}x{h} image", "use a smaller image or larger range cells")
    shortlist = SHORTLISTS.load(opts.shortlist).model if opts.search == "shortlist" else None
    codes, shapes, factors = {}, {}, {}
    for g, planes, factor in groups:
        weight = 1.0 if g == "y" else _chroma_weight(factor)
        spatial = tuple(planes.shape[2:])
        group_lmbda = lmbda / GREY**2 / weight
        found = search_tree(layout.collage(), planes, layout.quantiser(), shortlist, opts.probes, group_lmbda * opts.prune_bits)
        codes[g] = encode_group(found, layout, spatial, group_lmbda, contexts)
        if opts.refine_steps:
            codes[g] = refine_group(codes[g], layout, _full(image, g), factor, opts.refine_steps)
        shapes[g], factors[g] = (int(planes.shape[1]), spatial), factor
    return codes, shapes, factors


class SparseCollageCodec:
    name = NAME
    encode_options = SparseCollageEncodeOptions
    decode_options = SparseCollageDecodeOptions

    def encode(self, x: Tensor, registry: Any, *, quality: int | None, device: torch.device, options: dict[str, Any]) -> Container:
        """(1 c h w) in [0, 1], c = 1 or 3 -> a container."""
        opts = parse_options(f"codec {self.name!r}", self.encode_options, options)
        h, w = codec_input_size(x, NAME, opts.max_pixels)
        lmbda = opts.lmbda if opts.lmbda is not None else lmbda_for_quality(50 if quality is None else quality)
        layout = Layout(**{k: getattr(opts, k) for k in COLLAGE_KEYS})
        image = x.detach().float().cpu()
        image = rgb_to_ycbcr(image) if x.shape[1] == 3 else image
        settings = {"collage": layout.header(), "chroma": opts.chroma, "solver": dict(DEFAULT_SOLVER)}
        preset = next((n for n, named in PRESETS.items() if named == settings), None)
        priors, named_prior = stream_priors(opts.prior, lmbda, settings)
        codes, shapes, factors = search_codes(image, layout, opts, lmbda, contexts=priors is not None)
        header: dict[str, Any] = {
            "codec": self.name,
            "modality": "image",
            "created_by": plugin_versions(registry, self.name),
            "image": {"channels": int(x.shape[1]), "spatial": [h, w]},
            **({"preset": preset} if preset is not None else settings),
            **({"prior": named_prior} if named_prior is not None else {}),
        }
        strengths = None
        if opts.deblock:
            # Fitted on what the decoder will decode: the codes as stored.
            stored = {g: as_stored(codes[g], layout, *shapes[g]) for g in codes}
            # Its own tolerance: the strengths are integers in 1/64 steps, which a looser decode (from the
            # image, 4-6 iterations instead of 9-12) leaves unchanged.
            decoded = _solve(layout, stored, shapes, factors, (h, w), 1, device, opts.deblock_tol, DEFAULT_SOLVER["max_iter"], image=image)
            strengths = [deblocking.fit(decoded[:, c : c + 1], image[:, c : c + 1].to(decoded), *_borders(layout)) for c in range(x.shape[1])]
            if not any(any(s) for s in strengths):
                strengths = None
        data = pack_streams(codes, layout, shapes, strengths, priors)
        return Container(header, {"streams": as_tensor(data)})

    def decode(self, container: Container, registry: Any, *, scale: int, device: torch.device, options: dict[str, Any]) -> Tensor:
        """-> (1 c h*scale w*scale) in [0, 1]."""
        opts = parse_options(f"codec {self.name!r}", self.decode_options, options)
        if not isinstance(scale, int) or scale < 1:
            raise CollagekitError(f"scale must be a positive integer, got {scale!r}")
        layout, info = read_header(container)
        elements = info["channels"] * math.prod(info["spatial"]) * scale * scale
        if elements > DEFAULT_MAX_ELEMENTS:
            raise CollagekitError(f"decoding at scale {scale} needs {elements:,} values, above the limit of {DEFAULT_MAX_ELEMENTS:,}; use a smaller scale")
        size = "x".join(map(str, reversed(info["spatial"])))
        budget.check(decode_bytes(layout, info, scale), f"decoding a {size} image at scale {scale}", "use a smaller scale or image")
        if set(container.tensors) != {"streams"}:
            raise CollagekitError(f"corrupt .clg file: a {NAME} file holds one tensor 'streams', found {sorted(container.tensors)}")
        data = from_tensor(container.tensors["streams"], f"{NAME} streams")
        priors = priors_of_file(container.header.get("prior"), info["settings"], opts.prior)
        codes, streamed = unpack_streams(data, layout, info["shapes"], info["channels"], priors)
        if streamed is not None and info["deblock"] is not None:
            raise CollagekitError("corrupt .clg file: it holds deblocking strengths both in its header and in its streams")
        deblock = streamed if streamed is not None else info["deblock"]
        tol = opts.tol or info["solver"]["tol"]
        max_iter = opts.max_iter or info["solver"]["max_iter"]
        z = _solve(layout, codes, info["shapes"], info["factors"], info["spatial"], scale, device, tol, max_iter)
        if deblock is not None:
            z = torch.cat([deblocking.apply(z[:, c : c + 1], deblock[c], *_borders(layout), scale) for c in range(z.shape[1])], dim=1)
        return (ycbcr_to_rgb(z) if z.shape[1] == 3 else z).clamp(0.0, 1.0)


# Float32 copies of the decoded planes kept while they become the image: the planes, the deblocking
# filter's basis signal and output, the colour transform, the clip (as the neural-collage codec counts).
OUTPUT_COPIES = 6


def decode_bytes(layout: Layout, info: dict[str, Any], scale: int) -> int:
    """Peak working memory of a decode at ``scale``: the larger plane group's solve on top of the decoded
    planes, then the output's copies."""
    collage = layout.collage()
    solves = [
        collage_decode_bytes(CollageGeometry.of_collage(collage, size), count, info["factors"][g] * scale, {"method": "picard"}, output=0)
        for g, (count, size) in info["shapes"].items()
    ]
    output = info["channels"] * math.prod(info["spatial"]) * scale * scale
    return max(solves) + budget.FLOAT * (OUTPUT_COPIES + budget.SAVE_COPIES) * output


def fits(size: tuple[int, ...], top: int) -> bool:
    """Whether a domain (twice the top range) fits a plane of this size once padded to whole top cells."""
    return min(math.ceil(s / top) * top for s in size) >= 2 * top


def _borders(layout: Layout) -> tuple[int, int]:
    """The deblocking filter's cell and tile sizes: the smallest range cell and the quadtree's top cell."""
    return layout.range_size >> (layout.levels - 1), layout.range_size


def read_header(container: Container) -> tuple[Layout, dict[str, Any]]:
    """Validate a sparse-collage header -> (layout, info: channels, spatial, shapes, factors, solver, deblock)."""

    def bad(why: str) -> CollagekitError:
        return CollagekitError(f"corrupt .clg file: {why}")

    image = container.require("image")
    if not isinstance(image, dict):
        raise bad("the image's shape is malformed")
    channels = header_int(image.get("channels"), "image.channels", 1, 3)
    if channels == 2:
        raise bad("an image has 1 or 3 channels, not 2")
    spatial = header_shape(image.get("spatial"), "image.spatial", 2, DEFAULT_MAX_ELEMENTS // channels)
    spelled = {"collage", "chroma", "solver"} & set(container.header)
    if "preset" in container.header:
        if spelled:
            raise bad(f"it names a preset and also spells out {', '.join(sorted(spelled))}")
        number = container.header["preset"]
        if isinstance(number, bool) or number not in PRESETS:
            raise bad(f"unknown settings preset {number!r} (this collagekit knows {', '.join(map(str, PRESETS))}; a newer one may have written it)")
        settings = PRESETS[number]
    else:
        settings = {key: container.require(key) for key in ("collage", "chroma", "solver")}
    c = settings["collage"]
    if not isinstance(c, dict) or set(c) != set(COLLAGE_KEYS):
        raise bad(f"its collage settings must name exactly {', '.join(COLLAGE_KEYS)}")
    top = header_int(c["range_size"], "collage.range_size", 4, 64)
    levels = header_int(c["levels"], "collage.levels", 1, 5)
    if top & (top - 1) or top >> (levels - 1) < 2:
        raise bad(f"collage.range_size {top} with {levels} levels is not a power of two ending at 2 pixels or more")
    if not isinstance(c["dihedral"], bool):
        raise bad("collage.dihedral must be true or false")
    layout = Layout(
        range_size=top, levels=levels,
        domain_stride=header_int(c["domain_stride"], "collage.domain_stride", 1, 8),
        dihedral=c["dihedral"],
        sources=header_int(c["sources"], "collage.sources", 1, 4),
        weight_levels=header_int(c["weight_levels"], "collage.weight_levels", 1, 31),
        contraction=header_number(c["contraction"], "collage.contraction", 1e-3, 0.999),
        bias_step=header_number(c["bias_step"], "collage.bias_step", 1e-2, 32.0),
    )  # fmt: skip
    chroma = settings["chroma"]
    if chroma not in ("half", "full"):
        raise bad(f"chroma must be 'half' or 'full', got {chroma!r}")
    solver = settings["solver"]
    if not isinstance(solver, dict) or set(solver) != {"tol", "max_iter"}:
        raise bad("the solver settings are malformed")
    solver = {"tol": header_number(solver["tol"], "solver.tol", 1e-9, 1.0), "max_iter": header_int(solver["max_iter"], "solver.max_iter", 1, 100_000)}
    deblock = container.header.get("deblock")
    if deblock is not None and not (isinstance(deblock, list) and len(deblock) == channels and all(deblocking.valid(s) for s in deblock)):
        raise bad("its deblocking strengths are malformed")
    shapes: dict[str, tuple[int, tuple[int, ...]]] = {"y": (1, spatial)}
    factors = {"y": 1}
    if channels == 3:
        half = chroma == "half"
        shapes["c"] = (2, tuple((s + 1) // 2 for s in spatial) if half else spatial)
        factors["c"] = 2 if half else 1
    for g, (_, size) in shapes.items():
        if not fits(size, top):  # the encoder could not have searched it
            raise bad(f"plane group {g!r} of {list(size)} pixels is too small for domains of {2 * top} pixels")
    info = {"channels": channels, "spatial": spatial, "shapes": shapes, "factors": factors, "solver": solver, "deblock": deblock,
            "settings": {"collage": layout.header(), "chroma": chroma, "solver": solver}}  # fmt: skip
    return layout, info


def stream_priors(choice: str, lmbda: float, settings: dict[str, Any]) -> tuple[dict[str, StreamPrior] | None, Any]:
    """The encode option ``prior`` -> (the priors to code with or None, what the header records of them:
    a shipped set's number, a reference to another file, or None)."""
    if choice == "none":
        return None, None
    if choice == "auto":
        if not SHIPPED_PRIORS or settings != PRESETS[1]:  # the shipped priors model the default settings' streams
            return None, None
        number = min(SHIPPED_PRIORS, key=lambda n: abs(math.log(SHIPPED_PRIORS[n][1] / lmbda)))
        return priors_of_file(number, settings), number
    loaded = PRIORS.load(choice)
    _check_settings(loaded, settings)
    number = next((n for n, (name, _, sha) in SHIPPED_PRIORS.items() if (name, sha) == (loaded.name, loaded.sha256)), None)
    return loaded.model.priors(), number if number is not None else loaded.reference()


def priors_of_file(named: Any, settings: dict[str, Any], override: str | None = None) -> dict[str, StreamPrior] | None:
    """A header's ``prior`` entry (None: the file has none) -> the priors its streams were coded with."""
    if named is None:
        return None
    if isinstance(named, int) and not isinstance(named, bool):
        if named not in SHIPPED_PRIORS:
            raise CollagekitError(f"corrupt .clg file: unknown shipped stream priors {named} (this collagekit knows {', '.join(map(str, SHIPPED_PRIORS)) or 'none'}; a newer one may have written it)")
        name, _, sha = SHIPPED_PRIORS[named]
        named = {"name": name, "version": "1", "sha256": sha}
    loaded = PRIORS.for_code(named, override)
    _check_settings(loaded, settings)
    return loaded.model.priors()


def _check_settings(loaded: Any, settings: dict[str, Any]) -> None:
    if loaded.config.layout != {k: settings[k] for k in ("collage", "chroma")}:
        raise CollagekitError(f"stream priors {loaded.name!r} model the streams of other settings ({loaded.config.layout}); train a set for these with sparse_collage_prior_train")
