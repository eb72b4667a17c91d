"""Fit one grid signal's collage, save the code, and decode it at any scale.

Modality plugins register a subclass of :class:`GridFractalizeTask` with their own defaults (the image
plugin's takes the whole image as the single domain plus its dihedral variants: the paper's
fractalization). ``collagekit fractalize FILE`` runs the modality's task on FILE.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field

from collagekit import budget
from collagekit.budget import CollageGeometry, collage_decode_bytes, collage_fit_bytes
from collagekit.config import CollageConfig, Slot, slot_default
from collagekit.container import SIGNAL_ATTRS, read_container, write_container
from collagekit.errors import CollagekitError
from collagekit.gridcodec import GridCollageCodec, decode_grid
from collagekit.interfaces import ComponentConfig
from collagekit.metrics import psnr, write_metrics
from collagekit.modality import DEFAULT_MAX_ELEMENTS, Modality, save_signal
from collagekit.tasks import FileTaskConfig, Task


class GridFractalizeConfig(FileTaskConfig):
    input: str | None = Field(None, description="file to fractalize (default: the modality's shipped sample)")
    output: str = Field(description="where to write the decoded attractor")
    scale: int = Field(1, ge=1, le=64, description="decode the output at this integer scale")
    max_elements: int = Field(DEFAULT_MAX_ELEMENTS, ge=1, description="refuse inputs/outputs with more values")
    collage: CollageConfig
    encoder: Annotated[ComponentConfig, Slot("encoder")] = slot_default("fit")
    solver: Annotated[ComponentConfig, Slot("solver")] = slot_default("anderson", tol=1e-4, max_iter=100)


class GridFractalizeTask(Task):
    """load -> fit -> save .clg -> decode the saved file (scale 1 for PSNR, scale s for the output)."""

    modality: ClassVar[str]
    config: GridFractalizeConfig

    def sample_path(self) -> Path:
        """The sample used when the recipe names no input."""
        raise CollagekitError(f"the {self.modality} task needs an input file")

    def run(self) -> dict[str, Any]:
        cfg, registry, device = self.config, self.ctx.registry, self.ctx.device
        modality: Modality = registry.get("modality", self.modality)
        source, output, code_path = cfg.paths(modality.suffixes, self.sample_path)
        x = modality.load(source, cfg.max_elements).to(device)
        out_elements = x[0].numel() * cfg.scale ** (x.ndim - 2)
        if out_elements > cfg.max_elements:  # refuse before fitting, so no file is left behind
            raise CollagekitError(
                f"decoding at scale {cfg.scale} needs {out_elements:,} values, above the limit of "
                f"{cfg.max_elements:,}; use a smaller scale or raise max_elements"
            )

        # Memory is checked from the sizes alone, before the operator (and its learned cells) exists.
        geometry = CollageGeometry.of_config(cfg.collage, registry, tuple(x.shape[2:]))
        signals = x.shape[0] * x.shape[1]
        size = "x".join(map(str, x.shape[1:]))
        budget.check(collage_fit_bytes(geometry, signals, cfg.solver.model_dump()), f"fitting a {size} signal", "use a smaller input or larger range cells")
        need = collage_decode_bytes(geometry, signals, cfg.scale, cfg.solver.model_dump(), output=out_elements)
        budget.check(need, f"decoding at scale {cfg.scale}", "use a smaller scale")

        collage = cfg.collage.build(registry).to(device)
        encoder = registry.build("encoder", cfg.encoder).to(device)
        solver = registry.build("solver", cfg.solver)
        started = time.perf_counter()
        params = encoder.encode(x, collage, solver)
        fit_seconds = time.perf_counter() - started
        if not all(bool(torch.isfinite(t).all()) for t in params):
            raise CollagekitError("the fit diverged (its parameters are NaN or infinite); lower encoder.lr or use fewer steps")

        container = GridCollageCodec.pack(
            modality=self.modality,
            collage_config=cfg.collage,
            collage=collage,
            params=params,
            solver=solver,
            signal_shape=tuple(x.shape[1:]),
            created_by=self.ctx.versions(),
            registry=registry,
        )
        attrs = modality.read_attributes(source)
        container.header[SIGNAL_ATTRS] = attrs
        code_bytes = write_container(code_path, container)
        # Report what the saved file decodes to, not the in-memory fit.
        saved = read_container(code_path)
        s_collage, s_params, s_solver, shape = GridCollageCodec.unpack(saved, registry)
        started = time.perf_counter()
        big = decode_grid(s_collage, s_params, s_solver, shape, cfg.scale, device, cfg.max_elements)
        decode_seconds = time.perf_counter() - started
        decoded = big if cfg.scale == 1 else decode_grid(s_collage, s_params, s_solver, shape, 1, device)
        save_signal(modality, big[:1].cpu(), output, attrs, cfg.scale)

        metrics = {
            "input": str(source),
            "output": str(output),
            "code": str(code_path),
            "code_bytes": code_bytes,
            "shape": list(x.shape[1:]),
            "scale": cfg.scale,
            "psnr_db": round(psnr(x, decoded), 3),
            "lipschitz_bound": round(float(s_collage.lipschitz_bound(s_params).max()), 4),
            "fit_seconds": round(fit_seconds, 2),
            "decode_seconds": round(decode_seconds, 3),
            "device": str(device),
        }
        if cfg.metrics:
            write_metrics(cfg.metrics, metrics)
        return metrics
