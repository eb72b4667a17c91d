"""Fit one grid signal's collage, save the code, and decode it at any scale.

Modality plugins register a subclass of :class:`GridFractalizeTask` with their own defaults (the image
plugin's takes the whole image as the single domain plus its dihedral variants: the paper's
fractalization). ``collagekit fractalize FILE`` and :func:`collagekit.fractalize` run the modality's
task; :class:`~collagekit.tasks.FractalizeTask` reads the input and writes the files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from collagekit import budget
from collagekit.budget import CollageGeometry, collage_decode_bytes, collage_fit_bytes
from collagekit.container import SIGNAL_ATTRS, from_bytes, to_bytes
from collagekit.errors import CollagekitError
from collagekit.gridcodec import (
    GridCollageCodec,
    bias_step_for,
    decode_grid,
    on_lattice,
)
from collagekit.metrics import psnr
from collagekit.sparse import SparseParams
from collagekit.tasks import Coded, FractalizeTask, GridFractalizeConfig

__all__ = ["GridFractalizeConfig", "GridFractalizeTask"]


class GridFractalizeTask(FractalizeTask):
    """fit -> pack the code -> decode the code's bytes (scale 1 for PSNR, scale s for the output)."""

    config: GridFractalizeConfig

    def sample_path(self) -> Path:
        """The sample used when the recipe names no input."""
        raise CollagekitError(f"the {self.modality} task needs an input file")

    def quality(self, x: Tensor, decoded: Tensor, attrs: dict[str, Any]) -> dict[str, float | None]:
        """(b c *) input and scale-1 decode in [0, 1] -> the figures reported; PSNR of the 8-bit values by
        default (images). Modalities stored otherwise override it (audio: SNR beside PSNR, 16-bit)."""
        return {"psnr_db": round(psnr(x, decoded), 3)}

    def fractalize(self, x: Tensor, attrs: dict[str, Any]) -> Coded:
        cfg, registry, device = self.config, self.ctx.registry, self.ctx.device
        x = x.to(device)
        out_elements = x[0].numel() * cfg.scale ** (x.ndim - 2)
        if out_elements > cfg.max_elements:  # refuse before fitting
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

        if isinstance(params, SparseParams):
            params = on_lattice(collage, params, x)
        container = GridCollageCodec.pack(
            modality=self.modality,
            collage_config=cfg.collage,
            collage=collage,
            params=params,
            solver=solver,
            signal_shape=tuple(x.shape[1:]),
            created_by=self.ctx.versions(),
            registry=registry,
            bias_step=bias_step_for(x),
        )
        if attrs:  # most signals have none: no bytes for an empty mapping
            container.header[SIGNAL_ATTRS] = attrs
        code = to_bytes(container)
        # Report what the code file decodes to, not the in-memory fit.
        s_collage, s_params, s_solver, shape = GridCollageCodec.unpack(from_bytes(code), registry)
        started = time.perf_counter()
        big = decode_grid(s_collage, s_params, s_solver, shape, cfg.scale, device, cfg.max_elements)
        decode_seconds = time.perf_counter() - started
        decoded = big if cfg.scale == 1 else decode_grid(s_collage, s_params, s_solver, shape, 1, device)

        metrics = {
            "code_bytes": len(code),
            "shape": list(x.shape[1:]),
            "scale": cfg.scale,
            **self.quality(x, decoded, attrs),
            "lipschitz_bound": round(float(s_collage.lipschitz_bound(s_params).max()), 4),
            "fit_seconds": round(fit_seconds, 2),
            "decode_seconds": round(decode_seconds, 3),
            **self.ctx.conditions(),
        }
        return Coded(code, big[:1].cpu(), metrics)
