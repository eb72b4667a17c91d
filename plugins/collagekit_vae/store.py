"""Trained VAEs at rest: one safetensors file of weights whose metadata holds the model's config.

The metadata (strings only, nothing executable) carries ``format``, the :class:`VAEConfig` as JSON,
the β it was trained with, its test metrics and the versions that wrote it. Loading validates the
config against the installed registry (so a missing partitioner or solver plugin is named), builds
the model and loads the weights. Shipped models are found by name (``mnist``, ``mnist-conv``).
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from collagekit.errors import CollagekitError
from collagekit.registry import Registry

if TYPE_CHECKING:
    from collagekit_vae.model import HierarchicalVAE

FORMAT = "collagekit-vae/1"
SHIPPED = {"mnist": "mnist_collage.safetensors", "mnist-conv": "mnist_conv.safetensors"}


def shipped_model(name: str) -> Path:
    return Path(str(files("collagekit_vae") / "models" / SHIPPED[name]))


def resolve(checkpoint: str | Path) -> Path:
    """A shipped model's name, or a path to a model file (or a training output folder holding model.safetensors)."""
    if str(checkpoint) in SHIPPED:
        return shipped_model(str(checkpoint))
    path = Path(checkpoint)
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise CollagekitError(f"folder {str(path)!r} holds no model.safetensors (has its training finished?)")
        return path / "model.safetensors"
    if not path.is_file():
        names = ", ".join(SHIPPED)
        raise CollagekitError(f"checkpoint {str(path)!r} does not exist (give a model file, a training folder, or one of: {names})")
    return path


def save_model(model: HierarchicalVAE, path: str | Path, *, beta: float, metrics: dict[str, Any], created_by: dict[str, str]) -> None:
    from collagekit.training import save_weights

    metadata = {
        "format": FORMAT,
        "config": model.config.model_dump_json(),
        "beta": repr(float(beta)),
        "metrics": json.dumps(metrics),
        "created_by": json.dumps(created_by),
    }
    save_weights(model, path, metadata)


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CollagekitError(f"{str(path)!r} is not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    if metadata.get("format") != FORMAT:
        raise CollagekitError(f"{str(path)!r} is not a collagekit VAE model (format {metadata.get('format')!r}, want {FORMAT!r})")
    return metadata


def upgrade_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A config written before the heads were registry components (one ``head_hidden`` for both) ->
    the same model as two ``gaussian-conv`` heads, whose parameter names are the ones it saved."""
    if isinstance(raw, dict) and "head_hidden" in raw:
        head = {"name": "gaussian-conv", "hidden": raw.pop("head_hidden")}
        raw.setdefault("prior", head)
        raw.setdefault("posterior", head)
    return raw


def load_model(checkpoint: str | Path, registry: Registry) -> tuple[HierarchicalVAE, dict[str, Any]]:
    """(model in eval mode, metadata with ``beta`` a float and ``metrics`` a dict)."""
    from collagekit.recipe import RecipeModels
    from collagekit.training import load_weights
    from collagekit_vae.model import VAEConfig, build_model

    path = resolve(checkpoint)
    metadata = read_metadata(path)
    try:
        raw = upgrade_config(json.loads(metadata["config"]))
        config = RecipeModels(registry).specialize(VAEConfig).model_validate(raw)
        info = {"beta": float(metadata["beta"]), "metrics": json.loads(metadata.get("metrics", "{}")), "path": str(path)}
    except (KeyError, ValueError, ValidationError) as exc:
        raise CollagekitError(f"{str(path)!r} has a damaged model config: {str(exc).splitlines()[0]}") from None
    model = build_model(config, registry)
    load_weights(model, path)
    return model.eval(), info
