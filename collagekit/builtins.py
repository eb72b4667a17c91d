"""The core's own components, registered through the same hooks a third-party plugin uses."""

from __future__ import annotations

from collagekit.hookspecs import Register, hookimpl


@hookimpl
def register_poolers(register: Register) -> None:
    from collagekit.grid import AveragePooler

    register(AveragePooler)


@hookimpl
def register_auxiliaries(register: Register) -> None:
    from collagekit.grid import LearnedPatches

    register(LearnedPatches)


@hookimpl
def register_encoders(register: Register) -> None:
    from collagekit.fit import FitEncoder
    from collagekit.search import SearchEncoder

    register(FitEncoder)
    register(SearchEncoder)


@hookimpl
def register_solvers(register: Register) -> None:
    from collagekit.solver import Anderson, Picard

    register(Picard)
    register(Anderson)


@hookimpl
def register_codecs(register: Register) -> None:
    from collagekit.gridcodec import GridCollageCodec

    register(GridCollageCodec())
