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

from torch import Tensor

from collagekit.container import SIGNAL_ATTRS, from_bytes, to_bytes
from collagekit.errors import CollagekitError
from collagekit.gridcodec import GridCollageCodec, decode_grid
from collagekit.metrics import psnr
from collagekit.tasks import Coded, FractalizeTask, GridFractalizeConfig

__all__ = ["GridFractalizeConfig", "GridFractalizeTask"]


class GridFractalizeTask(FractalizeTask):
    """fit -> pack the code -> decode the code's bytes (scale 1 for PSNR, scale s for the output)."""

    config: GridFractalizeConfig

    def sample_path(self) -> Path:
        """The sample used when the recipe names no input."""
        raise CollagekitError(f"the {self.modality} task needs an input file")

    def fractalize(self, x: Tensor, attrs: dict[str, Any]) -> Coded:
        cfg, registry, device = self.config, self.ctx.registry, self.ctx.device
        x = x.to(device)
        out_elements = x[0].numel() * cfg.scale ** (x.ndim - 2)
        if out_elements > cfg.max_elements:  # refuse before fitting
            raise CollagekitError(
                f"decoding at scale {cfg.scale} needs {out_elements:,} values, above the limit of "
                f"{cfg.max_elements:,}; use a smaller scale or raise max_elements"
            )

        collage = cfg.collage.build(registry).to(device)
        encoder = registry.build("encoder", cfg.encoder).to(device)
        solver = registry.build("solver", cfg.solver)
        started = time.perf_counter()
        params = encoder.encode(x, collage, solver)
        fit_seconds = time.perf_counter() - started

        container = GridCollageCodec.pack(
            modality=self.modality,
            collage_config=cfg.collage,
            collage=collage,
            params=params,
            solver=solver,
            signal_shape=tuple(x.shape[1:]),
            created_by=self.ctx.versions(),
        )
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
            "psnr_db": round(psnr(x, decoded), 3),
            "lipschitz_bound": round(float(s_collage.lipschitz_bound(s_params).max()), 4),
            "fit_seconds": round(fit_seconds, 2),
            "decode_seconds": round(decode_seconds, 3),
            **self.ctx.conditions(),
        }
        return Coded(code, big[:1].cpu(), metrics)
