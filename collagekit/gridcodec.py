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

from collagekit import budget, sparse, tree
from collagekit.budget import CollageGeometry, collage_decode_bytes
from collagekit.codec import (
    MAX_CLASS,
    as_tensor,
    decode_symbols,
    encode_symbols,
    from_tensor,
    signed_from_streams,
    signed_streams,
)
from collagekit.config import CollageConfig, Options, parse_options
from collagekit.container import Container, header_int, header_shape
from collagekit.errors import CollagekitError
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.operator import CollageParams, GridCollage
from collagekit.plugins import ENV_SELECT
from collagekit.progress import progress_bar
from collagekit.registry import Registry, component_providers
from collagekit.search import Quantiser
from collagekit.solver import Solver, SolverStats
from collagekit.sparse import SparseParams

PARAM_PREFIX = "params."
# A sparse code's real values are stored as multiples of a step (header ``quantiser``): weights (at most
# the contraction, ~1) and constant cells' weights with a fixed one, offsets with one in the signal's
# units. The rounding error of a step 2**-9 weight on a source is ~1e-3 of the source; :func:`bias_step_for`
# puts the offsets' ~50 dB below the signal. Either costs ~log2(|value| / step) bits per value.
WEIGHT_STEP = 2.0**-9
DEFAULT_BIAS_STEP = 2.0**-12  # for signals in [0, 1] or [-1, 1] when the signal itself is not at hand
MIN_STEP, MAX_STEP = 2.0**-24, 1.0
QUANTISED = {"weight": "weight", "aux": "weight", "bias": "bias"}
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
        registry: Registry | None = None,
        bias_step: float = DEFAULT_BIAS_STEP,
    ) -> Container:
        """One signal's code -> a container. signal_shape: (c, *spatial) at scale 1. With ``registry``,
        the header also records which plugin and distribution provides each component the code needs
        (``providers``), so that a decoder without one can say what to install. ``bias_step``: the
        quantiser step of a sparse code's offsets, in the signal's units (:func:`bias_step_for`)."""
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
        if isinstance(params, SparseParams):
            if not (math.isfinite(bias_step) and MIN_STEP <= bias_step <= MAX_STEP):
                raise CollagekitError(f"the offsets' quantiser step {bias_step} is outside [{MIN_STEP}, {MAX_STEP}]")
            header["quantiser"] = {"weight": WEIGHT_STEP, "bias": bias_step}
        tensors = {PARAM_PREFIX + k: v for k, v in _stored(collage, params, tuple(signal_shape[1:]), header.get("quantiser")).items()}
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
        if collage.sparse:
            stored = {k[len(PARAM_PREFIX) :]: v for k, v in container.tensors.items() if k.startswith(PARAM_PREFIX)}
            steps = _quantiser(container.header.get("quantiser"), bad)
            params: CollageParams | SparseParams = _sparse_params(collage, stored, channels, spatial, steps, bad)
        else:
            shapes = collage.param_shapes(channels, spatial)
            params = CollageParams.from_tensors({key: container.tensor(PARAM_PREFIX + key, shape)[None] for key, shape in shapes.items()})
        return collage, params, solver, (channels, *spatial)

    def decode(
        self, container: Container, registry: Registry, *, scale: int, device: torch.device, options: dict[str, Any]
    ) -> Tensor:
        parse_options(f"codec {self.name!r}", self.decode_options, options)
        collage, params, solver, shape = self.unpack(container, registry)
        return decode_grid(collage, params, solver, shape, scale, device)


def _stored(collage: GridCollage, params: CollageParams | SparseParams, spatial: tuple[int, ...], steps: dict[str, float] | None) -> dict[str, Tensor]:
    """A code's tensors as stored. Dense: float32 as they are. Sparse: the split flags and source
    indices range-coded in one byte stream (``streams``, per level: an index costs about log2 of its
    level's source count in bits), and the weights (effective, inside the contraction ball), constant
    cells' weights and offsets quantised with the ``steps`` of the header's ``quantiser`` and coded by
    magnitude class in a second (``values``); what the file decodes to is what fractalize reports."""
    if isinstance(params, CollageParams):
        return {k: v[0].float() for k, v in params.tensors().items()}
    assert steps is not None
    streams, alphabets = _sparse_streams_layout(collage, spatial)
    cells = tree.leaves(params.split, sparse.planes_of(collage, params, spatial), collage.partitioner.range_grid(spatial),
                        collage.partitioner.range_size(1), collage.partitioner.levels)  # fmt: skip
    values: dict[str, Tensor] = {f"split.{level}": flags.long() for level, flags in enumerate(params.split)}
    first = 0
    for level, level_cells in enumerate(cells):
        rows = slice(first, first + len(level_cells))
        if collage.sources:
            values[f"index.{level}"] = params.index[rows].reshape(-1)
        if collage.constants:
            values[f"const.{level}"] = params.const_index[rows].reshape(-1)
        first += len(level_cells)
    out = {"streams": as_tensor(encode_symbols({name: values[name] for name in streams}, alphabets))}
    numbers: dict[str, Tensor] = {}
    symbols: dict[str, int] = {}
    for key, value in _float_params(collage, params, steps["weight"]).items():
        q = value.detach().double().cpu() / steps[QUANTISED[key]]
        if not torch.isfinite(q).all() or (q.numel() and float(q.abs().max()) >= 2 ** (MAX_CLASS - 1)):
            raise CollagekitError(f"a sparse code's {key} is not finite or too large to store: the fit diverged")
        key_streams, key_alphabets = signed_streams(key, q.round().long().reshape(-1))
        numbers.update(key_streams)
        symbols.update(key_alphabets)
    out["values"] = as_tensor(encode_symbols(numbers, symbols))
    return out


def _float_params(collage: GridCollage, params: SparseParams, weight_step: float) -> dict[str, Tensor]:
    """The real-valued parts of a sparse code as they are quantised: weights as applied, on the lattice
    and inside the ball (the search's quantiser), so a file's weights are exactly what decoding applies."""
    with torch.no_grad():
        w = sparse.effective_weights(params.weight.detach().cpu(), collage.contraction)
        # The bias step does not matter here: only the weights go through the search's quantiser.
        lattice = Quantiser(weight_step=weight_step, bias_step=1.0).weights(w, collage.contraction)
    return {"weight": lattice, "aux": params.aux, "bias": params.bias}


def _quantiser(entry: Any, bad: Callable[[str], CollagekitError]) -> dict[str, float] | None:
    """The header's ``quantiser`` (None: a code written before values were quantised, float16 tensors)."""
    if entry is None:
        return None
    if not isinstance(entry, dict) or set(entry) != {"weight", "bias"}:
        raise bad("'quantiser' should map weight and bias to their steps")
    for key, step in entry.items():
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or not MIN_STEP <= step <= MAX_STEP:
            raise bad(f"quantiser step {key!r} should be a number in [{MIN_STEP}, {MAX_STEP}], got {step!r}")
    return {key: float(step) for key, step in entry.items()}


def on_lattice(collage: GridCollage, params: SparseParams, x: Tensor) -> SparseParams:
    """A fitted sparse code of x (b c *spatial) with its weights moved to the stored lattice and every
    offset refitted to them: a leaf's mean is ``sum_j w_j mean(S_j) + b``, so rounding a weight by d
    moves it by ``d mean(S_j)``, which the offset takes back. Without this a flat region (a weight near
    rho on a source near 1) drifts by up to ``d / (1 - rho)`` on the attractor: 5 grey levels."""
    if not collage.sources:
        return params
    spatial = tuple(x.shape[2:])
    part = collage.partitioner
    grid, top = part.range_grid(spatial), part.range_size(1)
    with torch.no_grad():
        w = sparse.effective_weights(params.weight, collage.contraction)
        lattice = Quantiser(weight_step=WEIGHT_STEP, bias_step=1.0).weights(w, collage.contraction)
        padded = sparse.pad_to(x.detach(), tuple(g * t for g, t in zip(grid, top)))
        cells = tree.leaves(params.split, sparse.planes_of(collage, params, spatial), grid, top, part.levels)
        shift, first = [], 0
        for level, level_cells in enumerate(cells):
            rows = slice(first, first + len(level_cells))
            first += len(level_cells)
            if not len(level_cells):
                continue
            means = sparse.level_candidates(collage, padded, spatial, level).mean(-1)  # (p S)
            source_means = means[level_cells.plane[:, None].to(means.device), params.index[rows]]  # (m j)
            shift.append(((w[rows] - lattice[rows]) * source_means).sum(-1))
        bias = params.bias + torch.cat(shift) if shift else params.bias
    return SparseParams(params.split, params.index, sparse.raw_weights(lattice, collage.contraction), params.const_index, params.aux, bias)


def bias_step_for(x: Tensor) -> float:
    """(b c *spatial) signal -> the offsets' quantiser step: its RMS about its mean over 256 (rounding
    noise ~60 dB below the signal, ~33 dB at worst after the attractor's 1 / (1 - rho) gain), a power
    of two, within the steps a header may carry, and no finer than its peak over 2**20: an offset is at
    most about twice the peak, so its magnitude stays far below 2**MAX_CLASS steps even where the
    signal is flat (RMS 0)."""
    signal = x.detach().double()
    rms = float((signal - signal.mean()).pow(2).mean().sqrt())
    peak = float(signal.abs().max()) if signal.numel() else 0.0
    finest = max(rms / 256, peak * 2.0**-20, MIN_STEP)
    return min(2.0 ** math.floor(math.log2(finest)), MAX_STEP)


def _sparse_streams_layout(collage: GridCollage, spatial: tuple[int, ...]) -> tuple[list[str], dict[str, int]]:
    """The streams of a sparse code and their alphabets, from the operator and the signal's size."""
    levels = collage.partitioner.levels
    constants = sum(a.count(1) for a in collage.constant)
    names: list[str] = [f"split.{level}" for level in range(levels - 1)]
    alphabets = {name: 2 for name in names}
    for level in range(levels):
        if collage.sources:
            names.append(f"index.{level}")
            alphabets[names[-1]] = sparse.level_sources(collage, spatial, level)
        if collage.constants:
            names.append(f"const.{level}")
            alphabets[names[-1]] = max(constants, 1)
    return names, alphabets


def _finite(key: str, t: Tensor, bad: Callable[[str], CollagekitError]) -> Tensor:
    if not t.is_floating_point():
        raise bad(f"parameter {key!r} should hold floats, not {t.dtype}")
    if not torch.isfinite(t).all():
        raise bad(f"parameter {key!r} holds NaN or infinite values")
    return t.float()


def _sparse_params(collage: GridCollage, stored: dict[str, Tensor], channels: int, spatial: tuple[int, ...],
                   steps: dict[str, float] | None, bad) -> SparseParams:  # fmt: skip
    part = collage.partitioner
    levels, grid = part.levels, part.range_grid(spatial)
    parts = {"streams", "values"} if steps is not None else {"streams", "weight", "aux", "bias"}
    if set(stored) != parts:
        raise bad(f"a sparse code holds {', '.join(sorted(parts))}, found {sorted(stored)}")
    top_nodes = channels * math.prod(grid)
    _, alphabets = _sparse_streams_layout(collage, spatial)
    # Every cell of the full tree at most once, each with its flag and its sources.
    full = top_nodes * sum((2 ** len(spatial)) ** level for level in range(levels))
    decoded = decode_symbols(from_tensor(stored["streams"], "sparse code"), alphabets,
                             max_symbols=full * (1 + collage.sources + collage.constants), what="sparse code")  # fmt: skip
    split = tuple(torch.from_numpy(decoded[f"split.{level}"]).bool() for level in range(levels - 1))
    cells = tree.leaves(split, channels, grid, part.range_size(1), levels)
    index, const_index = [], []
    for level, level_cells in enumerate(cells):
        m = len(level_cells)
        for key, width, out in (("index", collage.sources, index), ("const", collage.constants, const_index)):
            if not width:
                out.append(torch.zeros(m, 0, dtype=torch.long))
                continue
            values = torch.from_numpy(decoded[f"{key}.{level}"])
            if values.numel() != m * width:
                raise bad(f"level {level} has {m} ranges but {values.numel()} {key} symbols")
            out.append(values.view(m, width))
    m = sum(len(c) for c in cells)
    shapes = {"weight": (m, collage.sources), "aux": (m, collage.constants), "bias": (m,)}
    floats = {}
    if steps is None:  # written before values were quantised: float16 tensors
        for key, shape in shapes.items():
            t = stored[key]
            if t.dtype != torch.float16 or tuple(t.shape) != shape:
                raise bad(f"parameter {key!r} should be float16 of shape {shape}, got {t.dtype} {tuple(t.shape)}")
            floats[key] = _finite(key, t, bad)
    else:
        numbers = decode_symbols(from_tensor(stored["values"], "sparse code"), max_symbols=(2 + 2 * MAX_CLASS) * m * (1 + collage.sources + collage.constants),
                                 what="sparse code")  # fmt: skip
        if any(not name.startswith(tuple(f"{key}." for key in shapes)) for name in numbers):
            raise bad(f"the values hold unexpected streams {sorted(numbers)}")
        for key, shape in shapes.items():
            q = signed_from_streams(key, numbers, math.prod(shape), "sparse code")
            floats[key] = (q.double() * steps[QUANTISED[key]]).float().view(shape)
        floats["weight"] = sparse.raw_weights(floats["weight"], collage.contraction)
    return SparseParams(split, torch.cat(index), floats["weight"], torch.cat(const_index), floats["aux"], floats["bias"])


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


def solve_grid(
    collage: GridCollage,
    params: CollageParams | SparseParams,
    solver: Solver,
    shape: tuple[int, ...],
    scale: int,
    device: torch.device,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    start: Tensor | None = None,
) -> tuple[Tensor, SolverStats]:
    """The attractor (b c *spatial*scale), from the collage's initial state (any start reaches the same
    fixed point), and what the solver did. ``start`` (b c *size, size at most spatial*scale) replaces
    the initial state's leading corner: an encoder that knows the signal starts from it and needs fewer
    iterations to the same fixed point."""
    if scale < 1:
        raise CollagekitError(f"scale must be a positive integer, got {scale}")
    channels, *spatial = shape
    elements = channels * math.prod(s * scale for s in spatial)
    if elements > max_elements:
        raise CollagekitError(
            f"decoding at scale {scale} needs {elements:,} values, above the limit of {max_elements:,}; use a smaller scale"
        )
    geometry = CollageGeometry.of_collage(collage, tuple(spatial))
    signals = channels if isinstance(params, SparseParams) else params.bias.shape[0] * channels  # a sparse code's planes
    need = collage_decode_bytes(geometry, signals, scale, solver.options(), output=elements)
    budget.check(need, f"decoding at scale {scale}", "use a smaller scale")
    collage = collage.to(device)
    params = params.map(lambda t: t.to(device))
    collage_step, z0 = collage.step_and_start(params, channels, tuple(spatial), scale)
    if start is not None:
        z0[(..., *(slice(0, n) for n in start.shape[2:]))] = start.to(z0)
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
