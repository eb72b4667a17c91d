"""Entry module of the VAE plugin: hook implementations only. Everything is registered lazily with its
Config or declaration from :mod:`collagekit_vae.config`, so listing and validating import no torch."""

from __future__ import annotations

from typing import Any

from collagekit.hookspecs import Register, hookimpl
from collagekit.lazy import Lazy


@hookimpl
def register_heads(register: Register) -> None:
    from collagekit_vae.config import GaussianConvConfig, GaussianResidualConfig

    register(Lazy("collagekit_vae.heads:GaussianConv", Config=GaussianConvConfig))
    register(Lazy("collagekit_vae.heads:GaussianResidual", Config=GaussianResidualConfig))


@hookimpl
def register_tasks(register: Register) -> None:
    from collagekit_vae.config import VAEMnistConfig

    register(Lazy("collagekit_vae.tasks:VAEMnist", Config=VAEMnistConfig))


@hookimpl
def register_benchmarks(register: Register) -> None:
    from collagekit_vae.config import VAE_BENCH

    register(VAE_BENCH)


@hookimpl
def register_commands(cli: Any) -> None:
    from collagekit_vae.commands import add_commands

    add_commands(cli)
