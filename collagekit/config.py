"""Every Config the core registers, and the building blocks recipes are made of. Imports no torch.

``collagekit list``, ``schema`` and ``validate`` read Configs, never tensors: a component's Config lives
in a module like this one (each plugin has its own ``config.py``), and the component's implementation
refers to it (``Config = GridConfig``). Plugins register the implementation lazily
(:class:`collagekit.lazy.Lazy`) with the Config declared beside it.

A *slot* is a field that holds some registered component's Config, chosen by its ``name``. Task configs
declare slots with ``Annotated[ComponentConfig, Slot("partitioner")]``; :mod:`collagekit.recipe` turns
each slot into a discriminated union of every registered Config of that kind, so YAML selects a
component by name and validates its fields, with no import paths anywhere.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from collagekit.errors import CollagekitError

if TYPE_CHECKING:
    from collagekit.operator import GridCollage
    from collagekit.registry import Registry


@dataclass(frozen=True)
class Slot:
    """Marks a field as holding a Config of a registered component ``kind``."""

    kind: str


def slot_default(name: str, **fields: Any) -> Any:
    """A slot's default: validated into the named component's Config when the recipe model is built."""
    return Field(default_factory=lambda: {"name": name, **fields}, validate_default=True)


# Seeds are 64-bit for torch's generators; tasks derive a few more seeds by adding small numbers.
MAX_SEED = 2**63 - 1


# Every model builds its validator when first used, not when its class is defined: listing components
# and options (collagekit list) reads the fields only, and ~60 models would cost ~0.3 s to build.
class StrictModel(BaseModel):
    # Unknown keys are errors (typos must not pass silently); a number where text is expected is taken
    # as its text, as YAML users expect (``version: 1``, ``model_version=2`` on the command line).
    # Infinity and NaN are never a setting (``lr: .inf`` would fit NaNs).
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False, defer_build=True)


class ComponentConfig(BaseModel):
    """Base of every component's Config. Subclasses declare ``name: Literal["their-name"] = "their-name"``."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str


# ---------------------------------------------------------------- the core's components
Size = PositiveInt | tuple[PositiveInt, ...]
Gradient = Literal["unrolled", "implicit", "phantom", "none"]


class GridConfig(ComponentConfig):
    """Range cells of ``range_size`` tile the signal (padded by edge replication to a multiple of it);
    domain cells of ``domain_size`` slide with ``domain_stride`` (default: the domain size), or
    ``domain_size: full`` makes the whole signal the single domain (fractalization, paper section 4.3)."""

    range_size: Size = Field(8, description="range cell size (int, or one per spatial axis)")
    domain_size: Size | Literal["full"] = Field(16, description="domain cell size, or 'full' for the whole signal")
    domain_stride: Size | None = Field(None, description="domain step (default: the domain size)")
    levels: int = Field(
        1, ge=1, le=8,
        description="range cell sizes: range_size halved 0 .. levels-1 times (adaptive cells; domains halve with them)",
    )


class AverageConfig(ComponentConfig):
    name: Literal["average"] = "average"


class LearnedPatchesConfig(ComponentConfig):
    name: Literal["learned"] = "learned"
    count: int = Field(4, ge=1, le=4096, description="number of learned patches")
    init_std: float = Field(0.1, ge=0, description="standard deviation of the random initial patches")


class FitConfig(ComponentConfig):
    name: Literal["fit"] = "fit"
    steps: int = Field(150, ge=0, le=1_000_000, description="Adam steps on the fixed-point loss")
    collage_steps: int = Field(100, ge=0, le=1_000_000, description="warm-up Adam steps on the collage loss")
    lr: float = Field(0.05, gt=0, description="Adam learning rate")


class ShortlistConfig(StrictModel):
    """A search shortlist's architecture (:mod:`collagekit.shortlist`), stored with its weights."""

    # Bounded: a model file's config is data from anywhere, and the networks are built before its weights are read.
    samples: list[Annotated[int, Field(ge=1, le=1024)]] = Field(
        [16, 64], min_length=1, max_length=6, description="cell sizes (samples per range cell) that get a network; others are searched exhaustively"
    )
    classes: int = Field(64, ge=2, le=4096, description="classes the blocks are sorted into")
    hidden: int = Field(64, ge=4, le=1024, description="width of each network's two hidden layers")
    # "sum" is the default so that shortlists saved before the field existed load as they were trained.
    sign: Literal["sum", "abs"] = Field(
        "sum", description="how a block's class ignores its sign: 'sum' of the network on the block and its negative (two passes), or 'abs' of a bias-free first layer (one pass)"
    )


StreamName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,15}$")]


class StreamPriorsConfig(StrictModel):
    """A set of trained stream priors (:class:`collagekit.prior.StreamPriors`), stored with its weights."""

    # Bounded: a model file's config is data from anywhere, and the tables are built before its weights are read.
    streams: dict[StreamName, Annotated[int, Field(ge=2, le=4096)]] = Field(
        min_length=1, max_length=64, description="the streams it models: name -> alphabet size"
    )
    layout: dict[str, Any] = Field(default_factory=dict, description="the codec settings whose streams these are (the codec checks them)")


class SearchConfig(ComponentConfig):
    name: Literal["search"] = "search"
    ranges: int | None = Field(None, ge=1, le=1 << 24, description="range cells (leaves) per channel (the code's size)")
    range_samples: float | None = Field(None, gt=0, description="or: one range cell per this many samples on average (a size relative to the signal)")
    split_tol: float = Field(0.02, gt=0, description="without a budget: split cells whose RMS collage error exceeds this (signal units)")
    steps: int = Field(0, ge=0, le=1_000_000, description="Adam steps on the fixed-point loss after the search")
    collage_steps: int = Field(0, ge=0, le=1_000_000, description="Adam steps on the collage loss after the search")
    lr: float = Field(0.01, gt=0, description="Adam learning rate of the refinement")

    @model_validator(mode="after")
    def _one_budget(self) -> SearchConfig:
        if self.ranges is not None and self.range_samples is not None:
            raise ValueError("give ranges or range_samples, not both")
        return self


class SolverConfig(ComponentConfig):
    tol: float = Field(1e-4, gt=0, description="stop when max |F(z) - z| <= tol")
    max_iter: int = Field(200, ge=1, le=100_000, description="most operator evaluations per solve")
    gradient: Gradient = Field("implicit", description="how gradients flow through the solve")
    backward_tol: float | None = Field(None, gt=0, description="adjoint tolerance (default tol/100)")
    phantom_steps: int = Field(5, ge=1, le=100)
    phantom_damping: float = Field(0.5, gt=0, le=1)


class PicardConfig(SolverConfig):
    name: Literal["picard"] = "picard"


class AndersonConfig(SolverConfig):
    name: Literal["anderson"] = "anderson"
    memory: int = Field(5, ge=1, le=50, description="past iterates mixed per step")
    beta: float = Field(1.0, gt=0, le=1, description="mixing (damping) factor")
    lam: float = Field(1e-6, ge=0, description="relative Tikhonov regularisation of the mixing system")


class CollageConfig(StrictModel):
    """The grid collage operator: which partitioner, pooler and auxiliary cells, its contraction, and
    how ranges mix their sources (dense: every source, K x S weights; sparse: a few named per range)."""

    partitioner: Annotated[ComponentConfig, Slot("partitioner")]
    pooler: Annotated[ComponentConfig, Slot("pooler")] = slot_default("average")
    auxiliary: Annotated[list[ComponentConfig], Slot("auxiliary")] = Field(default_factory=list)
    contraction: float = Field(0.95, gt=0, lt=1, description="rho: bound on sum |w| over signal-dependent sources")
    mixing: Literal["dense", "sparse"] = Field(
        "dense", description="dense: each range weighs every source; sparse: each names `sources` (+ `constants`); needed for levels > 1"
    )
    sources: int = Field(1, ge=0, le=64, description="sparse only: signal-dependent sources (domain x variant) each range names")
    constants: int = Field(0, ge=0, le=64, description="sparse only: constant cells (learned patches) each range names")

    @model_validator(mode="after")
    def _sparse_fields_need_sparse(self) -> CollageConfig:
        if self.mixing == "dense" and (self.sources != 1 or self.constants != 0):
            raise ValueError("sources and constants apply to mixing: sparse only")
        return self

    def build(self, registry: Registry) -> GridCollage:
        from collagekit.operator import GridCollage

        return GridCollage(
            registry.build("partitioner", self.partitioner),
            registry.build("pooler", self.pooler),
            [registry.build("auxiliary", aux) for aux in self.auxiliary],
            contraction=self.contraction,
            mixing=self.mixing,
            sources=self.sources,
            constants=self.constants,
        )


class TrainingConfig(StrictModel):
    """How to optimise an objective; embed it in a task's config as ``training``."""

    steps: int = Field(1000, ge=1, description="optimiser steps in all (a resumed run continues to this count)")
    batch_size: int = Field(16, ge=1, description="examples per step on each process")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 to lr")
    grad_clip: float | None = Field(1.0, gt=0, description="clip the gradient's global norm; null = off")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the data stream and initialisation")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (and one at the end)")
    log_every: int = Field(25, ge=1, description="steps averaged into one history entry")
    resume: bool = Field(True, description="continue from the checkpoint in the output folder, if there is one")


# ---------------------------------------------------------------- options of codecs and benchmarks
class Options(BaseModel):
    """Base of a codec's or benchmark's options: ``collagekit compress -O key=value``,
    ``decompress --key value``, ``bench NAME key=value``.

    One declaration serves validation (:func:`parse_options`) and ``collagekit list``. Values arrive
    parsed as YAML scalars, so types are strict: ``true`` is no integer, ``"5"`` no number.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


OptionsT = TypeVar("OptionsT", bound=Options)


def parse_options(owner: str, model: type[OptionsT], options: Mapping[str, Any]) -> OptionsT:
    """Validate ``options`` against ``model``; every problem is one line naming ``owner`` (``codec 'pifs'``)."""
    unknown = sorted(set(options) - set(model.model_fields))
    if unknown:
        known = list(model.model_fields)
        takes = f"; it takes: {', '.join(known)}" if known else "; it takes none"
        raise CollagekitError(f"{owner} does not take the option(s) {', '.join(unknown)}{takes}")
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise CollagekitError(f"{owner} option {where}: {error['msg']} (got {error.get('input')!r})") from None


def describe_fields(model: type[BaseModel], skip: tuple[str, ...] = ("name", "task")) -> list[tuple[str, str, str, str]]:
    """(field, type, default, description) of every field of ``model``, for listings and help texts."""
    rows = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
        rows.append((name, _type_name(info.annotation), default, info.description or ""))
    return rows


def _type_name(annotation: Any) -> str:
    """A field's type as a user reads it: ``int | tuple[int, ...] | 'full'``, ``str | None``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]" if args else getattr(origin, "__name__", str(origin))
    return getattr(annotation, "__name__", str(annotation))
