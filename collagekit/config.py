"""Config building blocks shared by recipes: component slots and the grid collage's own config.

A *slot* is a field that holds some registered component's Config, chosen by its ``name``. Task configs
declare slots with ``Annotated[ComponentConfig, Slot("partitioner")]``; :mod:`collagekit.recipe` turns
each slot into a discriminated union of every registered Config of that kind, so YAML selects a
component by name and validates its fields, with no import paths anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

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


# Seeds are 64-bit for torch's generators; tasks derive a few more seeds by adding small numbers.
MAX_SEED = 2**63 - 1


class StrictModel(BaseModel):
    # Unknown keys are errors (typos must not pass silently); a number where text is expected is taken
    # as its text, as YAML users expect (``version: 1``, ``model_version=2`` on the command line).
    # Infinity and NaN are never a setting (``lr: .inf`` would fit NaNs).
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False)


class CollageConfig(StrictModel):
    """The grid collage operator: which partitioner, pooler and auxiliary cells, and its contraction."""

    partitioner: Annotated[ComponentConfig, Slot("partitioner")]
    pooler: Annotated[ComponentConfig, Slot("pooler")] = slot_default("average")
    auxiliary: Annotated[list[ComponentConfig], Slot("auxiliary")] = Field(default_factory=list)
    contraction: float = Field(0.95, gt=0, lt=1, description="rho: bound on sum |w| over signal-dependent sources")

    def build(self, registry: Registry) -> GridCollage:
        from collagekit.operator import GridCollage

        return GridCollage(
            registry.build("partitioner", self.partitioner),
            registry.build("pooler", self.pooler),
            [registry.build("auxiliary", aux) for aux in self.auxiliary],
            contraction=self.contraction,
        )
