"""The ``grid-collage`` codec: a grid collage's parameters stored as float32 tensors in a ``.clg`` file.

This is the plain, unquantised code that fractalization and per-datum fitting produce. The header
carries the operator's config (component names and fields), the solver's config, the signal's
channels and size; the tensors are the :class:`CollageParams` and the operator's own parameters
(learned patches). Entropy-coded codecs build on the same container with their own codec names.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor

from collagekit.config import CollageConfig, Options, parse_options
from collagekit.container import Container
from collagekit.errors import CollagekitError
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.operator import CollageParams, GridCollage
from collagekit.progress import progress_bar
from collagekit.registry import Registry
from collagekit.solver import Solver

PARAM_PREFIX = "params."
OPERATOR_PREFIX = "operator."


class GridCollageCodec:
    name = "grid-collage"
    encode_options = None  # fitted by the fractalize tasks, not by ``collagekit compress``
    decode_options = Options

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
        tensors = {PARAM_PREFIX + k: v[0].float() for k, v in params.tensors().items()}
        tensors.update({OPERATOR_PREFIX + k: v.float() for k, v in collage.state_dict().items()})
        return Container(header, tensors)

    @staticmethod
    def unpack(container: Container, registry: Registry) -> tuple[GridCollage, CollageParams, Solver, tuple[int, ...]]:
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
        shapes = collage.param_shapes(channels, spatial)
        tensors: dict[str, Any] = {}
        for key, shape in shapes.items():
            t = container.tensors.get(PARAM_PREFIX + key)
            if t is None or tuple(t.shape) != shape:
                raise bad(f"parameter {key!r} is missing or has the wrong shape")
            if not torch.isfinite(t).all():
                raise bad(f"parameter {key!r} holds NaN or infinite values")
            tensors[key] = t[None].float()
        return collage, CollageParams.from_tensors(tensors), solver, (channels, *spatial)

    def decode(
        self, container: Container, registry: Registry, *, scale: int, device: torch.device, options: dict[str, Any]
    ) -> Tensor:
        parse_options(f"codec {self.name!r}", self.decode_options, options)
        collage, params, solver, shape = self.unpack(container, registry)
        return decode_grid(collage, params, solver, shape, scale, device)


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


def decode_grid(
    collage: GridCollage,
    params: CollageParams,
    solver: Solver,
    shape: tuple[int, ...],
    scale: int,
    device: torch.device,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Tensor:
    """The attractor (b c *spatial*scale), starting from zeros: any start reaches the same fixed point."""
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
    z0 = torch.zeros(params.bias.shape[0], channels, *(s * scale for s in spatial), device=device)
    collage_step = collage.step_fn(params, tuple(spatial), scale)
    with torch.no_grad(), progress_bar("decoding", solver.config.max_iter) as bar:

        def step(z: Tensor) -> Tensor:
            bar.advance()  # large decodes take seconds: show the iterations as they go
            return collage_step(z)

        z, _ = solver(step, z0, gradient="none")
    return z
