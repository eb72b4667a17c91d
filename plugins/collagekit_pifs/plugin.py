"""Entry module of the PIFS plugin: hook implementations only. Everything is registered lazily with its
Config or declaration from :mod:`collagekit_pifs.config`, so listing and validating import no torch."""

from __future__ import annotations

from collagekit.hookspecs import Register, hookimpl
from collagekit.lazy import Lazy


@hookimpl
def register_codecs(register: Register) -> None:
    from collagekit_pifs.config import PifsDecodeOptions, PifsEncodeOptions

    register(Lazy("collagekit_pifs.pifscodec:PifsCodec", name="pifs", encode_options=PifsEncodeOptions, decode_options=PifsDecodeOptions))


@hookimpl
def register_tasks(register: Register) -> None:
    from collagekit_pifs.config import PifsCompressConfig

    register(Lazy("collagekit_pifs.tasks:PifsCompress", Config=PifsCompressConfig))


@hookimpl
def register_benchmarks(register: Register) -> None:
    from collagekit_pifs.config import PIFS_BENCH

    register(PIFS_BENCH)
