"""The ``ifs`` codec: an IFS code in a ``.clg`` container, re-rendered at any point count.

Header: ``{"codec": "ifs", "modality": "pointcloud", "maps": K, "points": N, "seed": s,
"normalisation": {"centre": [x, y, z], "extent": e}}``; tensors ``A (k 3 3)``, ``t (k 3)``, ``p (k)`` in
unit-cube coordinates. Decoding renders the attractor by the chaos game, coloured by map, and maps it
back to the original units. ``collagekit decompress code.clg -o big.ply --points 1000000`` (``--seed``
too); ``--scale s`` multiplies the point count.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from collagekit.config import parse_options
from collagekit.container import Container
from collagekit.errors import CollagekitError
from collagekit.registry import Registry
from collagekit_pointcloud.chaos import chaos_game
from collagekit_pointcloud.cloudio import Normalisation, label_colours
from collagekit_pointcloud.config import MAX_POINTS, IFSDecodeOptions
from collagekit_pointcloud.ifs import IFS

MAX_MAPS = 255


def pack(ifs: IFS, normalisation: Normalisation, points: int, seed: int, created_by: dict[str, str]) -> Container:
    header = {
        "codec": IFSCodec.name,
        "modality": "pointcloud",
        "created_by": created_by,
        "maps": ifs.maps,
        "points": points,
        "seed": seed,
        "normalisation": {"centre": list(normalisation.centre), "extent": normalisation.extent},
    }
    return Container(header, {"A": ifs.A.float().cpu(), "t": ifs.t.float().cpu(), "p": ifs.p.float().cpu()})


def unpack(container: Container) -> tuple[IFS, Normalisation, int, int]:
    """Validate everything before anything is allocated: (ifs, normalisation, default points, seed)."""

    def bad(why: str) -> CollagekitError:
        return CollagekitError(f"corrupt .clg file: {why}")

    try:
        maps = int(container.require("maps"))
        points = int(container.require("points"))
        seed = int(container.require("seed"))
        norm = container.require("normalisation")
        centre = tuple(float(c) for c in norm["centre"])
        extent = float(norm["extent"])
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"the ifs header is malformed ({exc})") from None
    if not 1 <= maps <= MAX_MAPS:
        raise bad(f"{maps} maps (1 to {MAX_MAPS} allowed)")
    if not 1 <= points <= MAX_POINTS:
        raise bad(f"a default of {points:,} points (1 to {MAX_POINTS:,} allowed)")
    if len(centre) != 3 or not all(math.isfinite(c) for c in centre) or not (math.isfinite(extent) and extent > 0):
        raise bad("the normalisation is not three finite centre coordinates and a positive extent")
    shapes = {"A": (maps, 3, 3), "t": (maps, 3), "p": (maps,)}
    tensors: dict[str, Tensor] = {}
    for key, shape in shapes.items():
        tensor = container.tensors.get(key)
        if tensor is None or tuple(tensor.shape) != shape:
            raise bad(f"tensor {key!r} is missing or is not {shape}")
        if not torch.isfinite(tensor).all():
            raise bad(f"tensor {key!r} holds NaN or infinite values")
        tensors[key] = tensor.float()
    if (tensors["p"] < 0).any() or float(tensors["p"].sum()) <= 0:
        raise bad("the map probabilities are negative or all zero")
    ifs = IFS(tensors["A"], tensors["t"], tensors["p"] / tensors["p"].sum())
    rho = float(ifs.lipschitz().max())
    if not rho < 1:
        raise bad(f"a map is not a contraction (‖A‖₂ = {rho:.4f}), so there is no attractor to render")
    return ifs, Normalisation(centre, extent), points, seed  # type: ignore[arg-type]


def render(ifs: IFS, normalisation: Normalisation, points: int, seed: int, device: torch.device) -> Tensor:
    """The attractor in file units, coloured by map: (1 6 n)."""
    generator = torch.Generator().manual_seed(seed)
    xyz, labels = chaos_game(ifs, points, generator=generator, device=device)
    xyz = normalisation.inverse(xyz.cpu())
    return torch.cat([xyz, label_colours(labels, ifs.maps)], 1).T[None].contiguous()


class IFSCodec:
    name = "ifs"
    encode_options = None  # fitted by the pointcloud_fractalize task, not by ``collagekit compress``
    decode_options = IFSDecodeOptions

    def decode(
        self, container: Container, registry: Registry, *, scale: int, device: torch.device, options: dict[str, Any]
    ) -> Tensor:
        opts = parse_options(f"codec {self.name!r}", self.decode_options, options)
        ifs, normalisation, default_points, seed = unpack(container)
        points = (opts.points or default_points) * scale
        seed = seed if opts.seed is None else opts.seed
        if not 1 <= points <= MAX_POINTS:
            raise CollagekitError(f"codec 'ifs': the number of points must be between 1 and {MAX_POINTS:,}, got {points:,}")
        return render(ifs, normalisation, points, seed, device)
