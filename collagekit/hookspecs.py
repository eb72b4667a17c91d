"""The plugin API: pluggy markers and the ``register_*`` hooks.

Every hook receives a ``register`` callable and calls it once per thing it brings; the host owns the
registry, so nothing is registered by import side effect and call order never matters. A plugin module
(the target of an entry point in group ``collagekit``) holds ``@hookimpl`` functions and imports
nothing heavy at module level: import torch-using modules inside the hook bodies, or better, register
:class:`collagekit.lazy.Lazy` stand-ins with the Config declared, so that listing and validating import
no torch at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "collagekit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[Any], None]


@hookspec
def register_partitioners(register: Register) -> None:
    """Register :class:`~collagekit.interfaces.Partitioner` subclasses: ``register(MyPartitioner)``."""


@hookspec
def register_poolers(register: Register) -> None:
    """Register :class:`~collagekit.interfaces.Pooler` subclasses."""


@hookspec
def register_auxiliaries(register: Register) -> None:
    """Register :class:`~collagekit.interfaces.AuxiliaryDomain` subclasses."""


@hookspec
def register_encoders(register: Register) -> None:
    """Register :class:`~collagekit.interfaces.Encoder` subclasses."""


@hookspec
def register_solvers(register: Register) -> None:
    """Register :class:`~collagekit.solver.Solver` subclasses."""


@hookspec
def register_heads(register: Register) -> None:
    """Register :class:`~collagekit.interfaces.LatentHead` subclasses (a generative model's priors and posteriors)."""


@hookspec
def register_tasks(register: Register) -> None:
    """Register :class:`~collagekit.tasks.Task` subclasses: what a recipe's ``task:`` runs."""


@hookspec
def register_modalities(register: Register) -> None:
    """Register :class:`~collagekit.modality.Modality` objects: file suffixes -> load/save, fractalize."""


@hookspec
def register_codecs(register: Register) -> None:
    """Register :class:`~collagekit.container.Codec` objects that decode ``.clg`` files of their name."""


@hookspec
def register_benchmarks(register: Register) -> None:
    """Register :class:`~collagekit.bench.Benchmark` objects, run by ``collagekit bench NAME``."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to the ``collagekit`` typer app (``cli``): ``@cli.command()``."""
