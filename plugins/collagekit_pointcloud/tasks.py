"""``pointcloud_fractalize``: fit an IFS to a cloud, save its code, render the attractor (PLY, optional PNG).

``collagekit fractalize cloud.ply -o fractal.ply --maps 8 --points 200000 --png view.png``
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from collagekit import budget
from collagekit.container import from_bytes, to_bytes
from collagekit.errors import CollagekitError
from collagekit.tasks import Coded, FractalizeTask
from collagekit_pointcloud.config import CLOUD_SUFFIXES, MAX_POINTS, PointCloudFractalizeConfig

SAMPLE = "bunny_3k.ply"
EVAL_POINTS = 20_000  # points on each side of the reported Chamfer distance


def sample_cloud() -> Path:
    """A small cloud shipped in the package (a 3,000-point cut of the Stanford bunny), so the recipe runs anywhere."""
    return Path(str(files("collagekit_pointcloud") / "samples" / SAMPLE))


class PointCloudFractalize(FractalizeTask):
    modality: ClassVar[str] = "pointcloud"
    Config = PointCloudFractalizeConfig
    config: PointCloudFractalizeConfig

    def sample_path(self) -> Path:
        return sample_cloud()

    def output_suffixes(self) -> Collection[str]:
        return CLOUD_SUFFIXES  # meshes are read, never written

    def other_outputs(self) -> list[str | None]:
        if self.config.png and Path(self.config.png).suffix.lower() != ".png":
            raise CollagekitError(f"png {self.config.png!r} must end in .png")
        return [self.config.png]

    def write_others(self, stage: Callable[[str | Path], Path], coded: Coded) -> None:
        if self.config.png:
            from collagekit_pointcloud.png import render_png

            render_png(coded.decoded, stage(self.config.png), up=self.config.up)

    def fractalize(self, x: Tensor, attrs: dict[str, Any]) -> Coded:
        from collagekit_pointcloud.chamfer import chamfer
        from collagekit_pointcloud.cloudio import Normalisation
        from collagekit_pointcloud.fit import fit_ifs
        from collagekit_pointcloud.ifscodec import RENDER_BYTES_PER_POINT, IFSCodec, pack, render, unpack

        cfg, device = self.config, self.ctx.device
        xyz = x[0, :3].T.contiguous()  # (n 3), file units
        n = xyz.shape[0]
        if cfg.maps > n:
            raise CollagekitError(f"the cloud has {n} points, fewer than the {cfg.maps} maps asked for")
        points = (cfg.points or n) * cfg.scale
        if points > MAX_POINTS:
            raise CollagekitError(f"{points:,} points to render is above the limit of {MAX_POINTS:,}")
        budget.check(RENDER_BYTES_PER_POINT * points, f"rendering {points:,} points", "ask for fewer points")
        normalisation = Normalisation.of(xyz)
        unit = normalisation.forward(xyz).to(device)

        generator = torch.Generator().manual_seed(cfg.seed)
        started = time.perf_counter()
        result = fit_ifs(unit, cfg.maps, cfg.fit, generator, cfg.partitioner)
        fit_seconds = time.perf_counter() - started

        code = to_bytes(pack(result.ifs, normalisation, points, cfg.seed, self.ctx.versions()))
        # Everything below comes from the code file's bytes, not the in-memory fit.
        ifs, saved_norm, saved_points, seed = unpack(from_bytes(code))
        started = time.perf_counter()
        rendered = IFSCodec().decode(from_bytes(code), self.ctx.registry, scale=1, device=device, options={})
        render_seconds = time.perf_counter() - started

        # Chamfer of the attractor to the cloud, both in the cloud's unit cube (DESIGN section 4).
        eval_gen = torch.Generator().manual_seed(cfg.seed + 1)
        reference = unit.cpu()[torch.randperm(n, generator=eval_gen)[:EVAL_POINTS]]
        attractor = saved_norm.forward(render(ifs, saved_norm, min(EVAL_POINTS, max(n, 1000)), seed + 1, device)[0, :3].T)
        metrics = {
            "code_bytes": len(code),
            "input_points": n,
            "maps": ifs.maps,
            "points": saved_points,
            "chamfer_l2_unit_cube": float(f"{chamfer(attractor, reference):.3e}"),
            "collage_chamfer": float(f"{result.history[-1]:.3e}") if result.history else None,
            "lipschitz_max": round(float(ifs.lipschitz().max()), 4),
            "fit_seconds": round(fit_seconds, 2),
            "render_seconds": round(render_seconds, 3),
            **self.ctx.conditions(),
        }
        if cfg.png:
            metrics["png"] = cfg.png
        return Coded(code, rendered, metrics)
