"""``pointcloud_fractalize``: fit an IFS to a cloud, save its code, render the attractor (PLY, optional PNG).

``collagekit fractalize cloud.ply -o fractal.ply --maps 8 --points 200000 --png view.png``
"""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from collagekit import budget
from collagekit.container import read_container, write_container
from collagekit.errors import CollagekitError
from collagekit.metrics import write_metrics
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.tasks import FileTaskConfig, Task
from collagekit_pointcloud.chaos import MAX_POINTS
from collagekit_pointcloud.fit import FitSettings
from collagekit_pointcloud.partition import PointPartitioner

SAMPLE = "bunny_3k.ply"
EVAL_POINTS = 20_000  # points on each side of the reported Chamfer distance


def sample_cloud() -> Path:
    """A small cloud shipped in the package (a 3,000-point cut of the Stanford bunny), so the recipe runs anywhere."""
    return Path(str(files("collagekit_pointcloud") / "samples" / SAMPLE))


class PointCloudFractalize(Task):
    class Config(FileTaskConfig):
        task: Literal["pointcloud_fractalize"] = "pointcloud_fractalize"
        input: str | None = Field(None, description="cloud or mesh to fractalize (default: the shipped sample)")
        output: str = Field("fractal.ply", description="the rendered attractor, coloured by map (.ply keeps colours)")
        png: str | None = Field(None, description="optional PNG picture of the attractor")
        maps: int = Field(8, ge=1, le=64, description="K: the number of affine maps")
        points: int | None = Field(None, ge=1, le=MAX_POINTS, description="points to render (default: as many as the input)")
        scale: int = Field(1, ge=1, le=64, description="multiplies the rendered point count (points x scale)")
        max_elements: int = Field(DEFAULT_MAX_ELEMENTS, ge=3, description="refuse clouds with more coordinates")
        up: Literal["x", "y", "z"] = Field("y", description="the cloud's vertical axis, for the PNG view")
        partitioner: PointPartitioner = Field(default_factory=lambda: {"name": "kmeans"}, validate_default=True)
        fit: FitSettings = Field(default_factory=FitSettings, description="how hard to fit")

    config: Config

    def run(self) -> dict[str, Any]:
        from collagekit_pointcloud.chamfer import chamfer
        from collagekit_pointcloud.cloudio import POINTCLOUD, Normalisation, save_cloud
        from collagekit_pointcloud.fit import fit_ifs
        from collagekit_pointcloud.ifscodec import RENDER_BYTES_PER_POINT, IFSCodec, pack, render, unpack

        cfg, device = self.config, self.ctx.device
        settings = cfg.fit
        source, output, code_path = cfg.paths((".ply", ".pcd", ".xyz", ".xyzrgb", ".pts"), sample_cloud)
        if cfg.png and Path(cfg.png).suffix.lower() != ".png":
            raise CollagekitError(f"png {cfg.png!r} must end in .png")
        cloud = POINTCLOUD.load(source, cfg.max_elements)  # (1 c n)
        xyz = cloud[0, :3].T.contiguous()  # (n 3), file units
        n = xyz.shape[0]
        if cfg.maps > n:
            raise CollagekitError(f"{source} has {n} points, fewer than the {cfg.maps} maps asked for")
        points = (cfg.points or n) * cfg.scale
        if points > MAX_POINTS:
            raise CollagekitError(f"{points:,} points to render is above the limit of {MAX_POINTS:,}")
        budget.check(RENDER_BYTES_PER_POINT * points, f"rendering {points:,} points", "ask for fewer points")
        normalisation = Normalisation.of(xyz)
        unit = normalisation.forward(xyz).to(device)

        generator = torch.Generator().manual_seed(cfg.seed)
        started = time.perf_counter()
        result = fit_ifs(unit, cfg.maps, settings, generator, cfg.partitioner)
        fit_seconds = time.perf_counter() - started

        code_bytes = write_container(code_path, pack(result.ifs, normalisation, points, cfg.seed, self.ctx.versions()))
        # Everything below comes from the saved file, not the in-memory fit.
        ifs, saved_norm, saved_points, seed = unpack(read_container(code_path))
        started = time.perf_counter()
        rendered = IFSCodec().decode(read_container(code_path), self.ctx.registry, scale=1, device=device, options={})
        render_seconds = time.perf_counter() - started
        save_cloud(rendered, output)
        if cfg.png:
            from collagekit_pointcloud.png import render_png

            render_png(rendered, cfg.png, up=cfg.up)

        # Chamfer of the attractor to the cloud, both in the cloud's unit cube (DESIGN section 4).
        eval_gen = torch.Generator().manual_seed(cfg.seed + 1)
        reference = unit.cpu()[torch.randperm(n, generator=eval_gen)[:EVAL_POINTS]]
        attractor = saved_norm.forward(render(ifs, saved_norm, min(EVAL_POINTS, max(n, 1000)), seed + 1, device)[0, :3].T)
        metrics = {
            "input": str(source),
            "output": str(output),
            "code": str(code_path),
            "code_bytes": code_bytes,
            "input_points": n,
            "maps": ifs.maps,
            "points": saved_points,
            "chamfer_l2_unit_cube": float(f"{chamfer(attractor, reference):.3e}"),
            "collage_chamfer": float(f"{result.history[-1]:.3e}") if result.history else None,
            "lipschitz_max": round(float(ifs.lipschitz().max()), 4),
            "fit_seconds": round(fit_seconds, 2),
            "render_seconds": round(render_seconds, 3),
            "device": str(device),
        }
        if cfg.png:
            metrics["png"] = cfg.png
        if cfg.metrics:
            write_metrics(cfg.metrics, metrics)
        return metrics
