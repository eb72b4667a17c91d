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

from collagekit import budget
from collagekit.budget import CollageGeometry, collage_decode_bytes
from collagekit.config import CollageConfig
from collagekit.container import Container, header_int, header_shape, reject_options
from collagekit.errors import CollagekitError
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.operator import CollageParams, GridCollage
from collagekit.progress import progress_bar
from collagekit.plugins import ENV_SELECT
from collagekit.registry import Registry, component_providers
from collagekit.solver import Solver

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
        registry: Registry | None = None,
    ) -> Container:
        """One signal's code -> a container. signal_shape: (c, *spatial) at scale 1. With ``registry``,
        the header also records which plugin and distribution provides each component the code needs
        (``providers``), so that a decoder without one can say what to install."""
        header = {
            "codec": GridCollageCodec.name,
            "modality": modality,
            "created_by": created_by,
            "signal": {"channels": signal_shape[0], "spatial": list(signal_shape[1:])},
            "collage": collage_config.model_dump(mode="json"),
            "solver": solver.config.model_dump(mode="json"),
        }
        if registry is not None:
            header["providers"] = component_providers(registry, _needs(header["collage"], header["solver"]))
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
        if not isinstance(signal, dict):
            raise bad("'signal' is not a mapping")
        channels = header_int(signal.get("channels"), "signal.channels", 1, DEFAULT_MAX_ELEMENTS)
        spatial = header_shape(signal.get("spatial"), "signal.spatial", (1, 2, 3), DEFAULT_MAX_ELEMENTS // channels)
        try:
            collage_cfg = models.specialize(CollageConfig).model_validate(container.require("collage"))
            solver_cfg = models.slot_union_adapter("solver").validate_python(container.require("solver"))
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise bad(str(exc).splitlines()[0]) from None
        # Sizes first, from the config alone: building the operator allocates its learned cells.
        geometry = CollageGeometry.of_config(collage_cfg, registry, spatial)
        need = collage_decode_bytes(geometry, channels, 1, solver_cfg.model_dump())
        budget.check(need, "decoding this code", "decode it on a machine with more memory")
        collage = collage_cfg.build(registry)
        solver = registry.build("solver", solver_cfg)
        state = {k[len(OPERATOR_PREFIX) :]: v for k, v in container.tensors.items() if k.startswith(OPERATOR_PREFIX)}
        expected = collage.state_dict()
        if set(state) != set(expected):
            raise bad("the operator's tensors do not match its config")
        collage.load_state_dict({k: container.tensor(OPERATOR_PREFIX + k, tuple(v.shape)) for k, v in expected.items()})
        shapes = collage.param_shapes(channels, spatial)
        tensors = {key: container.tensor(PARAM_PREFIX + key, shape)[None] for key, shape in shapes.items()}
        return collage, CollageParams.from_tensors(tensors), solver, (channels, *spatial)

    def decode(
        self, container: Container, registry: Registry, *, scale: int, device: torch.device, options: dict[str, Any]
    ) -> Tensor:
        reject_options(self.name, options)
        collage, params, solver, shape = self.unpack(container, registry)
        return decode_grid(collage, params, solver, shape, scale, device)


def _needs(collage: Any, solver: Any) -> list[tuple[str, str]]:
    """(kind, name) of every component a code's ``collage`` and ``solver`` header entries name."""
    return [
        ("partitioner", collage["partitioner"]["name"]),
        ("pooler", collage["pooler"]["name"]),
        *(("auxiliary", aux["name"]) for aux in collage["auxiliary"]),
        ("solver", solver["name"]),
    ]


def _require_components(container: Container, registry: Registry) -> None:
    """Say which component (and so which plugin and distribution) is missing, rather than 'corrupt file'."""
    try:
        needed = _needs(container.require("collage"), container.require("solver"))
    except (KeyError, TypeError) as exc:
        raise CollagekitError(f"corrupt .clg file: component {exc} is missing from the header") from None
    providers = container.header.get("providers")
    for kind, name in needed:
        if not isinstance(name, str) or name not in registry.names(kind):
            raise CollagekitError(f"this file needs the {kind} {name!r}, which no loaded plugin provides; {_install_hint(container, providers, kind, name)}")


def _install_hint(container: Container, providers: Any, kind: str, name: Any) -> str:
    """What provides a missing component, from the header's ``providers`` (or, in files from before
    it, the plugins that wrote the file)."""
    provider = providers.get(f"{kind}:{name}") if isinstance(providers, dict) else None
    if isinstance(provider, dict) and all(isinstance(provider.get(k), str) for k in ("plugin", "distribution", "version")):
        return (
            f"it comes from plugin {provider['plugin']!r} of the distribution {provider['distribution']} {provider['version']}: "
            f"install it (pip install {provider['distribution']}), or check {ENV_SELECT} if it is installed"
        )
    return f"it was written by: {container.writers()}"


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
    geometry = CollageGeometry.of_collage(collage, tuple(spatial))
    need = collage_decode_bytes(geometry, params.bias.shape[0] * channels, scale, solver.options(), output=elements)
    budget.check(need, f"decoding at scale {scale}", "use a smaller scale")
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
