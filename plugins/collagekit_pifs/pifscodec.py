"""The ``pifs`` codec: ``collagekit compress IMAGE --method pifs`` and ``collagekit decompress``.

Container: header ``{"codec": "pifs", "modality": "image", "signal": {"channels", "spatial"},
"pifs": <PifsParams>, "colour": "grey" | "ycbcr" | "rgb", "solver": {...}}`` and one uint8 tensor
``streams``: the entropy-coded quadtree and block codes (:mod:`collagekit.codec`).
Colour images are coded as YCbCr by default, chroma with a looser tolerance (``chroma=``).
The search runs on the CPU for now (it is plain batched tensor code, but has not been run on CUDA);
``device`` is honoured by decoding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from collagekit.codec import as_tensor, decode_symbols, encode_symbols, from_tensor
from collagekit.colour import rgb_to_ycbcr, ycbcr_to_rgb
from collagekit.config import parse_options
from collagekit.container import Container, header_int, header_shape
from collagekit.errors import CollagekitError
from collagekit.gridcodec import solve_grid
from collagekit.solver import Anderson, Picard, SolverStats
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.registry import plugin_versions
from collagekit_pifs import bitstream
from collagekit_pifs.config import DEFAULT_SEARCH, DEFAULT_SIZE_EXPONENT, PifsDecodeOptions, PifsEncodeOptions
from collagekit_pifs.decoder import as_collage, as_sparse
from collagekit_pifs.encoder import encode_channel, pad_image, padded_size, top_size
from collagekit_pifs.params import PifsParams
from collagekit_pifs.search import SEARCHES

COLOURS = ("ycbcr", "rgb")
SOLVERS = ("anderson", "picard")
SOLVER_CLASSES = {"anderson": Anderson, "picard": Picard}
DEFAULT_QUALITY = 50
DEFAULT_SOLVER = {"method": "picard", "tol": 1e-4, "max_iter": 200}


def rms_for_quality(quality: int) -> float:
    """Quality 0..100 -> RMS error target of the smallest blocks in 8-bit grey levels: 64 at 0, halving every 20."""
    if not 0 <= quality <= 100:
        raise CollagekitError(f"PIFS quality must be in [0, 100], got {quality}")
    return 64.0 * 2.0 ** (-quality / 20.0)


def _number(options: dict[str, Any], key: str, default: Any, kind: type) -> Any:
    value = options.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CollagekitError(f"PIFS option {key} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    return value


def _choice(options: dict[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = options.get(key, default)
    if value not in choices:
        raise CollagekitError(f"PIFS option {key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def params_from_options(options: dict[str, Any]) -> PifsParams:
    d = PifsParams()
    return PifsParams(
        max_range=_number(options, "max_range", d.max_range, int),
        min_range=_number(options, "min_range", d.min_range, int),
        domain_stride=_number(options, "domain_stride", d.domain_stride, int),
        s_bits=_number(options, "s_bits", d.s_bits, int),
        o_bits=_number(options, "o_bits", d.o_bits, int),
        s_max=_number(options, "s_max", d.s_max, float),
    )


class PifsCodec:
    name = "pifs"
    encode_options = PifsEncodeOptions
    decode_options = PifsDecodeOptions

    def encode(
        self, x: Tensor, registry: Any, *, quality: int | None, device: torch.device, options: dict[str, Any]
    ) -> Container:
        """(1 c h w) in [0, 1], c = 1 or 3 -> a container."""
        options = parse_options(f"codec {self.name!r}", self.encode_options, options).model_dump(exclude_none=True)
        if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
            raise CollagekitError(f"PIFS compresses grey or RGB images (1 c h w, c = 1 or 3), got shape {tuple(x.shape)}")
        params = params_from_options(options)
        rms = _number(options, "rms", rms_for_quality(DEFAULT_QUALITY if quality is None else quality), float)
        chroma = _number(options, "chroma", 2.0, float)
        size_exponent = _number(options, "size_exponent", DEFAULT_SIZE_EXPONENT, float)
        if not (rms > 0 and chroma > 0):
            raise CollagekitError(f"PIFS options rms and chroma must be positive, got {rms} and {chroma}")
        method = _choice(options, "search", DEFAULT_SEARCH, SEARCHES)
        colour = "grey" if x.shape[1] == 1 else _choice(options, "colour", "ycbcr", COLOURS)
        codes, spatial, top, padded = encode_image(x, params, rms / 255.0, method, colour, chroma, size_exponent)
        streams = bitstream.pack(codes, params)
        data = encode_symbols(streams, bitstream.alphabets(params, len(codes), padded, top))
        header = {
            "codec": self.name,
            "modality": "image",
            "created_by": plugin_versions(registry, self.name),
            "signal": {"channels": int(x.shape[1]), "spatial": list(spatial)},
            "pifs": params.to_header(),
            "colour": colour,
            "solver": dict(DEFAULT_SOLVER),
        }
        return Container(header, {"streams": as_tensor(data)})

    def decode(
        self, container: Container, registry: Any, *, scale: int, device: torch.device, options: dict[str, Any]
    ) -> Tensor:
        """-> (1 c h*scale w*scale) in [0, 1]."""
        options = parse_options(f"codec {self.name!r}", self.decode_options, options).model_dump(exclude_none=True)
        codes, params, info = read_code(container)
        solver = dict(info["solver"])
        solver["method"] = _choice(options, "solver", solver["method"], SOLVERS)
        solver["tol"] = _number(options, "tol", solver["tol"], float)
        solver["max_iter"] = _number(options, "max_iter", solver["max_iter"], int)
        if not (solver["tol"] > 0 and 1 <= solver["max_iter"] <= 100_000):
            raise CollagekitError("PIFS decoding needs tol > 0 and 1 <= max_iter <= 100000")
        return decode_image(codes, params, info, scale, device, **solver)[0]


# ---------------------------------------------------------------- the work, usable without a container
def encode_image(
    x: Tensor, params: PifsParams, tol: float, method: str, colour: str = "ycbcr", chroma: float = 2.0, size_exponent: float = DEFAULT_SIZE_EXPONENT
) -> tuple[list, tuple[int, int], int, tuple[int, int]]:
    """(1 c h w) -> (per-channel codes, (h, w), top range size, padded (H, W)). ``tol``: RMS in [0, 1]."""
    spatial = (int(x.shape[2]), int(x.shape[3]))
    top = top_size(params, spatial)
    padded = padded_size(spatial, top)
    image = x[0].detach().float().cpu()
    tols = [tol] * image.shape[0]
    if image.shape[0] == 3 and colour == "ycbcr":
        image = rgb_to_ycbcr(image[None])[0]
        tols = [tol, tol * chroma, tol * chroma]
    image = pad_image(image, padded)
    codes = [encode_channel(image[c], params, top, tols[c], method, size_exponent) for c in range(image.shape[0])]
    return codes, spatial, top, padded


def read_code(container: Container) -> tuple[list, PifsParams, dict[str, Any]]:
    """Validate a pifs container's header and streams -> (codes, params, info)."""

    def bad(why: str) -> CollagekitError:
        return CollagekitError(f"corrupt .clg file: {why}")

    params = PifsParams.from_header(container.require("pifs"))
    signal = container.require("signal")
    if not isinstance(signal, dict):
        raise bad("the signal's shape is malformed")
    channels = header_int(signal.get("channels"), "signal.channels", 1, 3)
    spatial = header_shape(signal.get("spatial"), "signal.spatial", 2, DEFAULT_MAX_ELEMENTS // channels)
    if channels == 2:
        raise bad("a PIFS image has 1 or 3 channels, not 2")
    colour = container.require("colour")
    if (channels == 1) != (colour == "grey") or colour not in ("grey", *COLOURS):
        raise bad(f"colour {colour!r} does not fit {channels} channel(s)")
    solver = container.require("solver")
    if (
        not isinstance(solver, dict)
        or solver.get("method") not in SOLVERS
        or not isinstance(solver.get("tol"), (int, float))
        or not isinstance(solver.get("max_iter"), int)
    ):
        raise bad("the solver settings are malformed")
    solver = {"method": solver["method"], "tol": float(solver["tol"]), "max_iter": solver["max_iter"]}
    top = top_size(params, spatial)
    padded = padded_size(spatial, top)
    if set(container.tensors) != {"streams"}:
        raise bad(f"a PIFS file holds one tensor 'streams', found {sorted(container.tensors)}")
    data = from_tensor(container.tensors["streams"], "PIFS streams")
    blocks = (padded[0] // params.min_range) * (padded[1] // params.min_range)
    streams = decode_symbols(
        data, bitstream.alphabets(params, channels, padded, top), max_symbols=channels * 8 * blocks + 64, what="PIFS streams"
    )
    codes = bitstream.unpack(streams, params, channels, padded, top)
    info = {"spatial": spatial, "top": top, "padded": padded, "colour": colour, "solver": solver}
    return codes, params, info


def decode_image(
    codes: list,
    params: PifsParams,
    info: dict[str, Any],
    scale: int,
    device: torch.device,
    *,
    method: str = "anderson",
    tol: float = 1e-4,
    max_iter: int = 200,
) -> tuple[Tensor, SolverStats]:
    """-> ((1 c h*scale w*scale) in [0, 1], the solver's statistics): the code's core collage
    (:mod:`collagekit_pifs.decoder`) solved by the core solver."""
    if not isinstance(scale, int) or scale < 1:
        raise CollagekitError(f"scale must be a positive integer, got {scale!r}")
    collage = as_collage(params, info["top"], len(codes[0].levels))
    solver = SOLVER_CLASSES[method](tol=tol, max_iter=max_iter)
    z, stats = solve_grid(collage, as_sparse(codes, params, info["padded"]), solver, (len(codes), *info["spatial"]), scale, device)
    if info["colour"] == "ycbcr":
        z = ycbcr_to_rgb(z)
    return z.clamp(0.0, 1.0), stats


def contraction_bound(codes: list, params: PifsParams, info: dict[str, Any]) -> float:
    """Sup-norm Lipschitz constant bound of the stored code's collage map (max |s|), from the core."""
    collage = as_collage(params, info["top"], len(codes[0].levels))
    return float(collage.lipschitz_bound(as_sparse(codes, params, info["padded"])))
