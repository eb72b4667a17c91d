"""The ``grid-collage`` codec: a grid collage's parameters stored as float32 tensors in a ``.clg`` file.

This is the plain, unquantised code that fractalization and per-datum fitting produce. The header
carries the operator's config (component names and fields), the solver's config, the signal's
channels and size; the tensors are the code — a dense :class:`CollageParams` or a sparse
:class:`~collagekit.sparse.SparseParams` (its split flags as bytes, its source indices in the smallest
integer type that holds them) — and the operator's own parameters (learned patches). Entropy-coded
codecs build on the same container with their own codec names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor

from collagekit.config import CollageConfig
from collagekit.container import Container, reject_options
from collagekit.errors import CollagekitError
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit import sparse
from collagekit.operator import CollageParams, GridCollage
from collagekit.sparse import SparseParams
from collagekit.progress import progress_bar
from collagekit.registry import Registry
from collagekit.solver import Solver, SolverStats

PARAM_PREFIX = "params."
OPERATOR_PREFIX = "operator."


class GridCollageCodec:
    name = "grid-collage"

    @staticmethod
    def pack(
        *,
        modality: str,
        collage_config: CollageConfig,
        collage: GridCollage,
        params: CollageParams,
        solver: Solver,
        signal_shape: tuple[int, ...],
        created_by: dict[str, str],
    ) -> Container:
        """One signal's code -> a container. signal_shape: (c, *spatial) at scale 1."""
        header = {
            "codec": GridCollageCodec.name,
            "modality": modality,
            "created_by": created_by,
            "signal": {"channels": signal_shape[0], "spatial": list(signal_shape[1:])},
            "collage": collage_config.model_dump(mode="json"),
            "solver": solver.config.model_dump(mode="json"),
        }
        tensors = {PARAM_PREFIX + k: v for k, v in _stored(params).items()}
        tensors.update({OPERATOR_PREFIX + k: v.float() for k, v in collage.state_dict().items()})
        return Container(header, tensors)

    @staticmethod
    def unpack(container: Container, registry: Registry) -> tuple[GridCollage, CollageParams | SparseParams, Solver, tuple[int, ...]]:
        from collagekit.recipe import RecipeModels

        def bad(why: str) -> CollagekitError:
            return CollagekitError(f"corrupt .clg file: {why}")

        models = RecipeModels(registry)
        _require_components(container, registry)
        signal = container.require("signal")
        try:
            channels = int(signal["channels"])
            spatial = tuple(int(s) for s in signal["spatial"])
            collage_cfg = models.specialize(CollageConfig).model_validate(container.require("collage"))
            solver_cfg = models.slot_union_adapter("solver").validate_python(container.require("solver"))
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise bad(str(exc).splitlines()[0]) from None
        if channels < 1 or not spatial or min(spatial) < 1 or channels * math.prod(spatial) > DEFAULT_MAX_ELEMENTS:
            raise bad(f"implausible signal shape {(channels, *spatial)}")
        collage = collage_cfg.build(registry)
        solver = registry.build("solver", solver_cfg)
        state = {k[len(OPERATOR_PREFIX) :]: v for k, v in container.tensors.items() if k.startswith(OPERATOR_PREFIX)}
        expected = collage.state_dict()
        if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in state):
            raise bad("the operator's tensors do not match its config")
        collage.load_state_dict(state)
        stored = {k[len(PARAM_PREFIX) :]: v for k, v in container.tensors.items() if k.startswith(PARAM_PREFIX)}
        if collage.sparse:
            params = _sparse_params(collage, stored, channels, spatial, bad)
        else:
            params = _dense_params(collage, stored, channels, spatial, bad)
        return collage, params, solver, (channels, *spatial)

    def decode(
        self, container: Container, registry: Registry, *, scale: int, device: torch.device, options: dict[str, Any]
    ) -> Tensor:
        reject_options(self.name, options)
        collage, params, solver, shape = self.unpack(container, registry)
        return decode_grid(collage, params, solver, shape, scale, device)


def _stored(params: CollageParams | SparseParams) -> dict[str, Tensor]:
    """A code's tensors as stored: floats as float32, split flags as bytes, indices in the smallest
    integer type that holds them (a file's size is the code's size)."""
    if isinstance(params, CollageParams):
        return {k: v[0].float() for k, v in params.tensors().items()}
    out: dict[str, Tensor] = {}
    for key, value in params.tensors().items():
        if value.dtype == torch.bool:
            out[key] = value.to(torch.uint8)
        elif value.is_floating_point():
            out[key] = value.float()
        else:
            top = int(value.max()) if value.numel() else 0
            out[key] = value.to(torch.uint8 if top < 256 else torch.int16 if top < 1 << 15 else torch.int32)
    return out


def _finite(key: str, t: Tensor, bad: Callable[[str], CollagekitError]) -> Tensor:
    if not t.is_floating_point():
        raise bad(f"parameter {key!r} should hold floats, not {t.dtype}")
    if not torch.isfinite(t).all():
        raise bad(f"parameter {key!r} holds NaN or infinite values")
    return t.float()


def _dense_params(collage: GridCollage, stored: dict[str, Tensor], channels: int, spatial: tuple[int, ...], bad) -> CollageParams:
    tensors: dict[str, Tensor] = {}
    for key, shape in collage.param_shapes(channels, spatial).items():
        t = stored.get(key)
        if t is None or tuple(t.shape) != shape:
            raise bad(f"parameter {key!r} is missing or has the wrong shape")
        tensors[key] = _finite(key, t, bad)[None]
    return CollageParams.from_tensors(tensors)


def _sparse_params(collage: GridCollage, stored: dict[str, Tensor], channels: int, spatial: tuple[int, ...], bad) -> SparseParams:
    levels = collage.partitioner.levels
    expected = {f"split.{level}" for level in range(levels - 1)} | set(SparseParams.KEYS)
    if set(stored) != expected:
        raise bad(f"a sparse code holds {sorted(expected)}, found {sorted(stored)}")
    tensors: dict[str, Tensor] = {}
    for key, t in stored.items():
        if key.startswith("split."):
            if t.dtype != torch.uint8 or t.ndim != 1 or (t > 1).any():
                raise bad(f"{key} must be one byte 0 or 1 per cell")
            tensors[key] = t.bool()
        elif key in ("index", "const_index"):
            if t.is_floating_point() or t.dtype == torch.bool or t.ndim != 2:
                raise bad(f"{key} must be a matrix of integers")
            tensors[key] = t.long()
        else:
            tensors[key] = _finite(key, t, bad)
    params = SparseParams.from_tensors(tensors, levels)
    if params.index.shape[-1] != collage.sources or params.const_index.shape[-1] != collage.constants:
        raise bad("the code names another number of sources per range than its collage")
    planes = sparse.planes_of(collage, params, spatial)
    if planes != channels:
        raise bad(f"the code holds {planes} planes for a {channels}-channel signal")
    sparse.build_plan(collage, params, spatial, 1)  # checks the layout and every index against the geometry
    return params


def _require_components(container: Container, registry: Registry) -> None:
    """Say which component (and so which plugin) is missing, rather than 'corrupt file'."""
    try:
        collage, solver = container.require("collage"), container.require("solver")
        needed = [
            ("partitioner", collage["partitioner"]["name"]),
            ("pooler", collage["pooler"]["name"]),
            *(("auxiliary", aux["name"]) for aux in collage["auxiliary"]),
            ("solver", solver["name"]),
        ]
    except (KeyError, TypeError) as exc:
        raise CollagekitError(f"corrupt .clg file: component {exc} is missing from the header") from None
    for kind, name in needed:
        if not isinstance(name, str) or name not in registry.names(kind):
            writers = ", ".join(f"{k} {v}" for k, v in dict(container.header.get("created_by") or {}).items())
            raise CollagekitError(
                f"this file needs the {kind} {name!r}, which no installed plugin provides (it was written by: {writers})"
            )


def solve_grid(
    collage: GridCollage,
    params: CollageParams | SparseParams,
    solver: Solver,
    shape: tuple[int, ...],
    scale: int,
    device: torch.device,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> tuple[Tensor, SolverStats]:
    """The attractor (b c *spatial*scale), from the collage's initial state (any start reaches the same
    fixed point), and what the solver did."""
    if scale < 1:
        raise CollagekitError(f"scale must be a positive integer, got {scale}")
    channels, *spatial = shape
    elements = channels * math.prod(s * scale for s in spatial)
    if elements > max_elements:
        raise CollagekitError(
            f"decoding at scale {scale} needs {elements:,} values, above the limit of {max_elements:,}; use a smaller scale"
        )
    collage = collage.to(device)
    params = params.map(lambda t: t.to(device))
    collage_step, z0 = collage.step_and_start(params, channels, tuple(spatial), scale)
    with torch.no_grad(), progress_bar("decoding", solver.config.max_iter) as bar:

        def step(z: Tensor) -> Tensor:
            bar.advance()  # large decodes take seconds: show the iterations as they go
            return collage_step(z)

        return solver(step, z0, gradient="none")


def decode_grid(
    collage: GridCollage,
    params: CollageParams | SparseParams,
    solver: Solver,
    shape: tuple[int, ...],
    scale: int,
    device: torch.device,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Tensor:
    """The attractor (b c *spatial*scale): :func:`solve_grid` without the solver's statistics."""
    return solve_grid(collage, params, solver, shape, scale, device, max_elements)[0]
