"""The ``neural-collage`` codec: the image modality's default for ``collagekit compress``.

Encode: pad the image to whole tiles, YCbCr with chroma at half resolution, one hypernetwork pass
per plane over all its tiles, integer codes per tile chosen by rate and distortion (the rounded
latents, or those without the tile's domain weights, whichever costs less by the model's own
training objective; codec option ``rdo=false`` rounds) and range-coded
(:func:`collagekit.codec.encode_symbols`, adaptive tables). Each (plane, parameter kind) group is
coded as one stream, or as one stream per latent channel when that is smaller (channels differ a lot
in spread; a table per channel pays off once a group carries enough bits); a range's offset
(``bias``, the cell's level) is coded as its residual from the neighbouring cells' median-edge
prediction across the whole plane when that is smaller (:mod:`collagekit.prediction`; on Kodak it
takes ~40 % off those bits, 10-25 % off the file); symbols are offset by each stream's largest
magnitude, which travels in a small stream ``h``. Decode: the integers times the
model's learned gains are the collage parameters; the core fixed-point solver gives every tile's
attractor (chroma at 2x, any ``scale`` on top), the tiles are stitched, a deblocking post-filter
smooths the steps at range and tile borders with strengths the encoder fitted to the original
(:mod:`collagekit.deblock`; codec option ``deblock=false`` skips it), and the planes are cropped.

Container header (besides the container's own fields)::

    {"codec": "neural-collage", "modality": "image",
     "model": {"name", "version", "sha256"},          # the weights it needs (hash of the model file)
     "image": {"channels": 1 | 3, "spatial": [h, w]},
     "quantiser": {"kind": "integer", "max_symbol": M},  # codes in [-M, M] times the model's gains
     "shapes": {"luma": [t, p, k], "chroma": [t, p, k]},
     "split": ["luma.aux", ...],                     # groups coded per channel
     "predicted": ["luma.bias", ...],                # groups coded as prediction residuals (if any)
     "deblock": [[6 integers], ...],                 # post-filter strengths per channel (if any)
     "solver": {"tol", "max_iter"}}

and one uint8 tensor ``streams``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from collagekit import budget
from collagekit import deblock as deblocking
from collagekit.budget import CollageGeometry, collage_decode_bytes
from collagekit.codec import (
    CellGrid,
    decode_latent_groups,
    encode_latent_groups,
    latent_container,
    read_latent_payload,
)
from collagekit.colour import YCBCR_TO_RGB, rgb_to_ycbcr
from collagekit.config import parse_options
from collagekit.container import Container, header_int, header_shape
from collagekit.errors import CollagekitError
from collagekit.hypercollage import PARAM_KINDS
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.pretrained import LoadedModel
from collagekit.progress import progress_bar
from collagekit.registry import plugin_versions
from collagekit_image.config import (
    DEFAULT_CHUNK,
    NeuralCollageDecodeOptions,
    NeuralCollageEncodeOptions,
)
from collagekit_image.imageio import codec_input_size
from collagekit_image.neural import Layout, NeuralCollageModel, Plane, pad_image
from collagekit_image.pretrained import STORE

NAME = "neural-collage"
DEFAULT_SOLVER = {"tol": 2e-4, "max_iter": 100}
# Parameter kinds whose values follow the signal's local level, so neighbouring range cells predict
# them: the offsets. (A probe on 6 Kodak images with nc-q2: prediction helps 7 of 504 other latent channels, by ~0.3 %.)
PREDICTABLE = ("bias",)


def _rd_weight(loaded: LoadedModel, rdo: bool) -> float | None:
    """The model's ``lmbda`` (stored by its training recipe) when rate-distortion optimised coding is
    on (option ``rdo``, default true) and the model has one; else None (latents are rounded)."""
    try:
        lmbda = float(loaded.metadata["lmbda"])
    except (KeyError, ValueError):
        return None
    return lmbda if rdo and math.isfinite(lmbda) and lmbda > 0 else None


def _planes(model: NeuralCollageModel, channels: int) -> list[tuple[str, Plane, int]]:
    """(name, plane, scale factor to full resolution) of the planes an image with ``channels`` has."""
    planes = [("luma", model.luma, 1)]
    if channels == 3:
        planes.append(("chroma", model.chroma, 2))
    return planes


def _groups(model: NeuralCollageModel, channels: int) -> list[tuple[str, str, slice]]:
    """(plane name, parameter kind, latent channels) of every stream group, in coding order."""
    out = []
    for name, plane, _ in _planes(model, channels):
        start = 0
        for kind in PARAM_KINDS:
            out.append((name, kind, slice(start, start + plane.sizes[kind])))
            start += plane.sizes[kind]
    return out


def _grids(model: NeuralCollageModel, layout: Layout, channels: int) -> dict[str, CellGrid]:
    """Stream group -> where its range cells lie: each plane's tiles back in place, cells inside them."""
    out = {}
    for name, plane, _ in _planes(model, channels):
        grid, count = (layout.luma_grid, 1) if name == "luma" else (layout.chroma_grid, 2)  # chroma: Cb, Cr
        side = plane.cfg.tile // plane.cfg.range_size
        sizes = {"n": count, "h": grid[0], "w": grid[1], "s": side}
        for kind in PREDICTABLE:
            out[_key(name, kind)] = CellGrid("(n h w) c (s r) -> (n c) (h s) (w r)", sizes)
    return out


def _key(plane: str, kind: str) -> str:
    """The group's short stream name (stored in the file): ``la`` = luma aux, ``la7`` = its channel 7."""
    return plane[0] + kind[0]


class NeuralCollageCodec:
    name = NAME
    encode_options = NeuralCollageEncodeOptions
    decode_options = NeuralCollageDecodeOptions

    def encode(self, x: Tensor, registry: Any, *, quality: int | None, device: torch.device, options: dict[str, Any]) -> Container:
        """(1 c h w) in [0, 1], c = 1 or 3 -> a container."""
        opts = parse_options(f"codec {self.name!r}", self.encode_options, options)
        h, w = codec_input_size(x, NAME, opts.max_pixels)
        loaded = STORE.load(str(opts.model or STORE.for_quality(quality)))
        lmbda = _rd_weight(loaded, opts.rdo)
        latents = encode_latents(loaded.model.to(device), x.to(device), opts.chunk, lmbda)
        m = loaded.model.cfg.max_symbol
        q = {name: t.clamp(-m, m).long().cpu() for name, t in latents.items()}
        names = {_key(plane, kind): f"{plane}.{kind}" for plane, kind, _ in _groups(loaded.model, x.shape[1])}
        groups = {_key(plane, kind): q[plane][:, sl, :] for plane, kind, sl in _groups(loaded.model, x.shape[1])}
        grids = _grids(loaded.model, Layout.of((h, w), loaded.model.cfg), x.shape[1])
        data, split_keys, predicted_keys = encode_latent_groups(groups, m, grids)
        fields: dict[str, Any] = {"image": {"channels": int(x.shape[1]), "spatial": [h, w]}, "shapes": {name: list(t.shape) for name, t in q.items()}}
        deblock = fit_deblock(loaded.model, q, x, device) if opts.deblock else None
        if deblock is not None:
            fields["deblock"] = deblock
        coded = (data, [names[k] for k in split_keys], [names[k] for k in predicted_keys])
        return latent_container(self.name, "image", plugin_versions(registry, self.name), loaded.reference(), fields, coded, m, DEFAULT_SOLVER)

    def decode(self, container: Container, registry: Any, *, scale: int, device: torch.device, options: dict[str, Any]) -> Tensor:
        """-> (1 c h*scale w*scale) in [0, 1]."""
        opts = parse_options(f"codec {self.name!r}", self.decode_options, options)
        loaded, latents, info = read_code(container, opts.model)
        solver = dict(info["solver"])
        solver["tol"] = opts.tol or solver["tol"]
        solver["max_iter"] = opts.max_iter or solver["max_iter"]
        return decode_latents(loaded.model, latents, info["channels"], info["spatial"], scale, device, **solver, deblock=info["deblock"]).clamp(0.0, 1.0)


# ---------------------------------------------------------------- the work, usable without a container
@torch.no_grad()
def encode_latents(model: NeuralCollageModel, x: Tensor, chunk: int = DEFAULT_CHUNK, lmbda: float | None = None) -> dict[str, Tensor]:
    """(1 c h w) -> plane name -> integer latents (t p k), float. Tiles go through in chunks.

    ``lmbda``: the model's rate-distortion weight (its training objective's ``lmbda * 255^2 * MSE +
    bpp``); given, each tile's code is chosen by :meth:`~collagekit.hypercollage.HyperCollage.rd_codes`
    against that objective, else the latents are rounded.
    """
    layout = Layout.of((int(x.shape[2]), int(x.shape[3])), model.cfg)
    luma, chroma = model.planes(pad_image(x.float(), layout))
    out = {}
    for (name, plane, _), tiles in zip(_planes(model, x.shape[1]), (luma, chroma)):
        if lmbda is None:
            out[name] = torch.cat([torch.round(plane.latents(part)) for part in tiles.split(chunk)])
            continue
        weight = _error_weights(name, tiles.shape[0]).to(tiles) * lmbda * 255.0**2
        codes = [plane.rd_codes(part, w, model.cfg.max_symbol, **DEFAULT_SOLVER) for part, w in zip(tiles.split(chunk), weight.split(chunk))]
        out[name] = torch.cat(codes)
    return out


def _error_weights(plane: str, tiles: int) -> Tensor:
    """(t) what a unit of squared error in each tile of a plane costs in mean squared RGB error per
    pixel, times the pixel count: 1 for luma; for chroma (half resolution, Cb tiles then Cr) 4 pixels
    times the colour transform's weight (Cb 1.09, Cr 0.83), as decoding spreads the error."""
    if plane == "luma":
        return torch.ones(tiles)
    cb, cr = ((YCBCR_TO_RGB.float() ** 2).sum(0) / 3)[1:].tolist()
    return 4.0 * torch.cat([torch.full((tiles // 2,), cb), torch.full((tiles - tiles // 2,), cr)])


@torch.no_grad()
def decode_latents(
    model: NeuralCollageModel,
    latents: dict[str, Tensor],
    channels: int,
    spatial: tuple[int, int],
    scale: int,
    device: torch.device,
    *,
    tol: float = DEFAULT_SOLVER["tol"],
    max_iter: int = DEFAULT_SOLVER["max_iter"],
    deblock: list[list[int]] | None = None,
) -> Tensor:
    """Integer latents -> (1 c h*scale w*scale), not clipped; ``deblock``: per channel (Y or Y, Cb,
    Cr), the strengths of :func:`collagekit.deblock.apply` (None: no filter)."""
    planes, layout = decode_planes(model, latents, channels, spatial, scale, device, tol=tol, max_iter=max_iter)
    if deblock is not None:
        planes = torch.cat([deblocking.apply(planes[:, c : c + 1], deblock[c], *model.borders(c), scale) for c in range(channels)], dim=1)
    return model.to_image(planes, layout, scale)


def decode_planes(
    model: NeuralCollageModel, latents: dict[str, Tensor], channels: int, spatial: tuple[int, int], scale: int, device: torch.device,
    *, tol: float, max_iter: int,
) -> tuple[Tensor, Layout]:
    """Integer latents -> the stitched, padded planes (1 c H*scale W*scale) (Y or YCbCr) and the layout."""
    if not isinstance(scale, int) or scale < 1:
        raise CollagekitError(f"scale must be a positive integer, got {scale!r}")
    elements = channels * spatial[0] * spatial[1] * scale * scale
    if elements > DEFAULT_MAX_ELEMENTS:
        raise CollagekitError(f"decoding at scale {scale} needs {elements:,} values, above the limit of {DEFAULT_MAX_ELEMENTS:,}; use a smaller scale")
    layout = Layout.of(spatial, model.cfg)
    planes = _planes(model, channels)
    need = decode_bytes(model, layout, channels, scale)
    budget.check(need, f"decoding a {spatial[1]}x{spatial[0]} image at scale {scale}", "use a smaller scale or image")
    model = model.to(device)
    decoded: dict[str, Tensor] = {}
    with progress_bar("decoding", len(planes) * max_iter) as bar:
        for name, plane, factor in planes:
            q = latents[name].to(device).float()
            decoded[name] = plane.decode(q, factor * scale, tol=tol, max_iter=max_iter, on_step=bar.advance)
    return model.stitch(decoded["luma"], decoded.get("chroma"), 1, layout), layout


# Float32 copies of the stitched planes kept while they become the image: the decoded tiles, the
# stitched planes, the deblocking filter's basis signal and output, the colour transform, the clip.
OUTPUT_COPIES = 6


def decode_bytes(model: NeuralCollageModel, layout: Layout, channels: int, scale: int) -> int:
    """Peak working memory of :func:`decode_latents` and writing the image: the larger plane's solve
    (all its tiles as one batch) on top of the finished planes, then the output's copies."""
    solver = {"method": "anderson"}  # HyperCollage.decode's solver, with its default memory
    tiles = {"luma": layout.luma_tiles, "chroma": layout.chroma_tiles}
    solves = [
        collage_decode_bytes(CollageGeometry.of_collage(plane.collage, plane.size), tiles[name], factor * scale, solver, output=0)
        for name, plane, factor in _planes(model, channels)
    ]
    output = channels * layout.padded[0] * layout.padded[1] * scale * scale
    return max(solves) + budget.FLOAT * (OUTPUT_COPIES + budget.SAVE_COPIES) * output


@torch.no_grad()
def fit_deblock(model: NeuralCollageModel, latents: dict[str, Tensor], x: Tensor, device: torch.device) -> list[list[int]] | None:
    """The deblocking strengths, per channel, that bring the decoded image closest to ``x`` (1 c h w)
    in [0, 1]; None when the filter would change nothing."""
    h, w = int(x.shape[2]), int(x.shape[3])
    planes, layout = decode_planes(model, latents, x.shape[1], (h, w), 1, device, **DEFAULT_SOLVER)
    target = pad_image(x.float().to(device), layout)
    if x.shape[1] == 3:
        target = rgb_to_ycbcr(target)
    strengths = [deblocking.fit(planes[:, c : c + 1, :h, :w], target[:, c : c + 1, :h, :w], *model.borders(c)) for c in range(x.shape[1])]
    return strengths if any(any(s) for s in strengths) else None


def read_code(container: Container, model_override: Any = None) -> tuple[LoadedModel, dict[str, Tensor], dict[str, Any]]:
    """Validate a neural-collage container -> (model, plane name -> latents (t p k) int64, info)."""

    def bad(why: str) -> CollagekitError:
        return CollagekitError(f"corrupt .clg file: {why}")

    loaded = STORE.for_code(container.require("model"), model_override)
    image = container.require("image")
    if not isinstance(image, dict):
        raise bad("the image's shape is malformed")
    channels = header_int(image.get("channels"), "image.channels", 1, 3)
    spatial = header_shape(image.get("spatial"), "image.spatial", 2, DEFAULT_MAX_ELEMENTS // channels)
    if channels == 2:
        raise bad("an image has 1 or 3 channels, not 2")
    model = loaded.model
    layout = Layout.of(spatial, model.cfg)
    planes = _planes(model, channels)
    expected = {name: [layout.luma_tiles if name == "luma" else layout.chroma_tiles, plane.channels, plane.ranges] for name, plane, _ in planes}
    if container.require("shapes") != expected:
        raise bad(f"its parameter shapes {container.header['shapes']} do not fit a {spatial[1]}x{spatial[0]} image under this model")
    m = model.cfg.max_symbol
    groups = _groups(model, channels)
    payload = read_latent_payload(container, NAME, m, {f"{p}.{k}" for p, k, _ in groups})
    shapes = {_key(p, k): (expected[p][0], sl.stop - sl.start, expected[p][2]) for p, k, sl in groups}
    split_keys = [_key(*g.split(".")) for g in payload.split]
    predicted_keys = [_key(*g.split(".")) for g in payload.predicted]
    blocks = decode_latent_groups(data=payload.data, shapes=shapes, split=split_keys, max_symbol=m, what=f"{NAME} streams",
                                  predicted=predicted_keys, grids=_grids(model, layout, channels))
    latents = {name: torch.cat([blocks[_key(name, kind)] for kind in PARAM_KINDS], dim=1) for name, _, _ in planes}
    deblock = container.header.get("deblock")
    if deblock is not None and not (isinstance(deblock, list) and len(deblock) == channels and all(deblocking.valid(s) for s in deblock)):
        raise bad("its deblocking strengths are malformed")
    info = {"channels": channels, "spatial": spatial, "solver": payload.solver, "deblock": deblock}
    return loaded, latents, info
