"""Config building blocks shared by recipes: component slots and the grid collage's own config.

A *slot* is a field that holds some registered component's Config, chosen by its ``name``. Task configs
declare slots with ``Annotated[ComponentConfig, Slot("partitioner")]``; :mod:`collagekit.recipe` turns
each slot into a discriminated union of every registered Config of that kind, so YAML selects a
component by name and validates its fields, with no import paths anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collagekit.interfaces import ComponentConfig

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


class StrictModel(BaseModel):
    # Unknown keys are errors (typos must not pass silently); a number where text is expected is taken
    # as its text, as YAML users expect (``version: 1``, ``model_version=2`` on the command line).
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


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
