"""Entry module of the VAE plugin: hook implementations only; heavy imports stay inside the hooks."""

from __future__ import annotations

from typing import Any

from collagekit.hookspecs import Register, hookimpl


@hookimpl
def register_heads(register: Register) -> None:
    from collagekit_vae.heads import GaussianConv, GaussianResidual

    register(GaussianConv)
    register(GaussianResidual)


@hookimpl
def register_tasks(register: Register) -> None:
    from collagekit_vae.tasks import VAEMnist

    register(VAEMnist)


@hookimpl
def register_benchmarks(register: Register) -> None:
    from collagekit_vae.bench import VAE_BENCH

    register(VAE_BENCH)


@hookimpl
def register_commands(cli: Any) -> None:
    from collagekit_vae.commands import add_commands

    add_commands(cli)
