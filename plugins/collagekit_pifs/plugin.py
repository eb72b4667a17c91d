"""Entry module of the PIFS plugin: hook implementations only; heavy imports stay inside the hooks."""

from __future__ import annotations

from collagekit.hookspecs import Register, hookimpl


@hookimpl
def register_codecs(register: Register) -> None:
    from collagekit_pifs.pifscodec import PifsCodec

    register(PifsCodec())


@hookimpl
def register_tasks(register: Register) -> None:
    from collagekit_pifs.tasks import PifsCompress

    register(PifsCompress)


@hookimpl
def register_benchmarks(register: Register) -> None:
    from collagekit_pifs.bench import PIFS_BENCH

    register(PIFS_BENCH)
