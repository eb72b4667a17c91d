"""``collagekit sample``: draw samples from a trained VAE and save them as one PNG grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def add_commands(cli: Any) -> None:
    @cli.command("sample")
    def sample_command(
        checkpoint: Annotated[str, typer.Argument(help="a model file, a training output folder, or a shipped model: mnist, mnist-conv")],
        output: Annotated[Path, typer.Option("-o", "--output", help="the PNG grid to write")],
        n: Annotated[int, typer.Option("--n", min=1, help="number of samples")] = 64,
        scale: Annotated[int, typer.Option("--scale", min=1, max=64, help="decode at this integer scale (collage VAEs)")] = 1,
        # max: collagekit.config.MAX_SEED (not imported here: this module loads with the CLI, before torch)
        seed: Annotated[int, typer.Option("--seed", min=0, max=2**63 - 1, help="the same seed draws the same codes at every scale")] = 0,
        figure: Annotated[Path | None, typer.Option("--figure", help="also write a 1x / 4x / 40x vs bicubic figure here")] = None,
        device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda")] = None,
        force: Annotated[bool, typer.Option("--force", "-y", help="replace existing output files")] = False,
    ) -> None:
        """Sample a trained VAE at --scale x its training resolution (28 x 28) and save a PNG grid."""
        from collagekit.device import resolve_device
        from collagekit.errors import CollagekitError
        from collagekit.fileio import check_outputs
        from collagekit.registry import get_registry
        from collagekit_vae.sample import (
            check_budget,
            grid,
            magnification_figure,
            sample,
            save_png,
        )
        from collagekit_vae.store import load_model

        for path in (output, figure):
            if path is not None and path.suffix.lower() != ".png":
                raise CollagekitError(f"output {str(path)!r} must end in .png")
        check_outputs([checkpoint], [output, figure], force)
        check_budget(n, scale)
        model, info = load_model(checkpoint, get_registry())
        if scale != 1 and model.config.decoder != "collage":
            raise CollagekitError("this is a convolutional VAE: it decodes at --scale 1 only (a collage VAE decodes at any scale)")
        if figure is not None and model.config.decoder != "collage":
            raise CollagekitError("--figure needs a collage VAE")
        model.to(resolve_device(device or "auto"))
        save_png(grid(sample(model, n, scale, seed)), output)
        typer.echo(f"wrote {output} ({n} samples at {28 * scale}x{28 * scale}, beta {info['beta']:g})")
        if figure is not None:
            magnification_figure(model, figure, seed=seed)
            typer.echo(f"wrote {figure}")
