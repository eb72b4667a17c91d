"""The core's own components, registered through the same hooks a third-party plugin uses.

Each is registered lazily with its Config (or its codec's options) declared: listing and validating
them imports no torch (:mod:`collagekit.lazy`). The declarations are imported inside the hooks, so
loading the plugin manager (``collagekit --help``) imports no pydantic either.
"""

from __future__ import annotations

from collagekit.hookspecs import Register, hookimpl
from collagekit.lazy import Lazy


@hookimpl
def register_poolers(register: Register) -> None:
    from collagekit.config import AverageConfig

    register(Lazy("collagekit.grid:AveragePooler", Config=AverageConfig))


@hookimpl
def register_auxiliaries(register: Register) -> None:
    from collagekit.config import LearnedPatchesConfig

    register(Lazy("collagekit.grid:LearnedPatches", Config=LearnedPatchesConfig))


@hookimpl
def register_encoders(register: Register) -> None:
    from collagekit.config import FitConfig, SearchConfig

    register(Lazy("collagekit.fit:FitEncoder", Config=FitConfig))
    register(Lazy("collagekit.search:SearchEncoder", Config=SearchConfig))


@hookimpl
def register_solvers(register: Register) -> None:
    from collagekit.config import AndersonConfig, PicardConfig

    register(Lazy("collagekit.solver:Picard", Config=PicardConfig))
    register(Lazy("collagekit.solver:Anderson", Config=AndersonConfig))


@hookimpl
def register_codecs(register: Register) -> None:
    from collagekit.config import Options

    register(Lazy("collagekit.gridcodec:GridCollageCodec", name="grid-collage", encode_options=None, decode_options=Options))


@hookimpl
def register_benchmarks(register: Register) -> None:
    from collagekit.startup import STARTUP_BENCH

    register(STARTUP_BENCH)
