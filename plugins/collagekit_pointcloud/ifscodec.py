"""The ``ifs`` codec: an IFS code in a ``.clg`` container, re-rendered at any point count.

Header: ``{"codec": "ifs", "modality": "pointcloud", "maps": K, "points": N, "seed": s,
"normalisation": {"centre": [x, y, z], "extent": e}}``; tensors ``A (k 3 3)``, ``t (k 3)``, ``p (k)`` in
unit-cube coordinates. Decoding renders the attractor by the chaos game, coloured by map, and maps it
back to the original units. ``collagekit decompress code.clg -o big.ply --points 1000000`` (``--seed``
too); ``--scale s`` multiplies the point count.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from collagekit import budget
from collagekit.config import MAX_SEED, parse_options
from collagekit.container import Container, header_int, header_number
from collagekit.errors import CollagekitError
from collagekit.registry import Registry
from collagekit_pointcloud.chaos import chaos_game
from collagekit_pointcloud.cloudio import Normalisation, label_colours
from collagekit_pointcloud.config import MAX_POINTS, IFSDecodeOptions
from collagekit_pointcloud.ifs import IFS

MAX_MAPS = 255
MAX_COORDINATE = 1e30  # largest coordinate (file units) a code may render: far inside float32's 3.4e38
# Peak bytes per rendered point, up to the written file: the chaos game's float32 points and labels,
# the float64 steps of mapping them back to file units, the colours, the (1 6 n) cloud, and the
# writer's float64 copies of coordinates and colours as open3d vectors. Measured: docs/results/budget.md.
RENDER_BYTES_PER_POINT = 200


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

    maps = header_int(container.require("maps"), "maps", 1, MAX_MAPS)
    points = header_int(container.require("points"), "points", 1, MAX_POINTS)
    seed = header_int(container.require("seed"), "seed", 0, MAX_SEED)
    norm = container.require("normalisation")
    centre = norm.get("centre") if isinstance(norm, dict) else None
    if not isinstance(centre, list) or len(centre) != 3:
        raise bad("the normalisation's centre is not three coordinates")
    centre = tuple(header_number(c, "normalisation.centre", -MAX_COORDINATE, MAX_COORDINATE) for c in centre)
    extent = header_number(norm.get("extent"), "normalisation.extent", 0.0, MAX_COORDINATE)
    if extent <= 0:
        raise bad("the normalisation's extent must be positive")
    tensors = {"A": container.tensor("A", (maps, 3, 3)), "t": container.tensor("t", (maps, 3)), "p": container.tensor("p", (maps,))}
    if (tensors["p"] < 0).any() or float(tensors["p"].sum()) <= 0:
        raise bad("the map probabilities are negative or all zero")
    ifs = IFS(tensors["A"], tensors["t"], tensors["p"] / tensors["p"].sum())
    rho = float(ifs.lipschitz().max())
    if not rho < 1:
        raise bad(f"a map is not a contraction (‖A‖₂ = {rho:.4f}), so there is no attractor to render")
    # Every chaos-game point lies within |t| / (1 - rho) of the origin (walkers start in the unit cube):
    # refuse codes whose points would leave float32 in the cloud's own units.
    radius = max(3**0.5, float(tensors["t"].double().norm(dim=1).max()) / (1.0 - rho))
    if (radius + 0.5) * extent + max(map(abs, centre)) > MAX_COORDINATE:
        raise bad(f"its points would reach beyond ±{MAX_COORDINATE:g} (extent {extent:g}, attractor radius {radius:g})")
    return ifs, Normalisation(centre, extent), points, seed  # type: ignore[arg-type]


def render(ifs: IFS, normalisation: Normalisation, points: int, seed: int, device: torch.device) -> Tensor:
    """The attractor in file units, coloured by map: (1 6 n)."""
    budget.check(RENDER_BYTES_PER_POINT * points, f"rendering {points:,} points", "ask for fewer points")
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
