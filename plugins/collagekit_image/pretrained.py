"""Trained Neural Collage image models: shipped ones (``models/<name>.safetensors`` in this package)
and user-trained ones given by path, through the core's :class:`collagekit.pretrained.ModelStore`."""

from __future__ import annotations

from pathlib import Path

from collagekit.pretrained import LoadedModel, ModelStore
from collagekit_image.neural import ModelConfig, NeuralCollageModel

MODEL_FORMAT = "collagekit-image-model"
QUALITY_PREFIX = "nc-q"

STORE = ModelStore(
    package="collagekit_image",
    format=MODEL_FORMAT,
    prefix=QUALITY_PREFIX,
    config=ModelConfig,
    build=NeuralCollageModel,
    what="Neural Collage model",
)

__all__ = ["MODEL_FORMAT", "QUALITY_PREFIX", "STORE", "LoadedModel", "load_model", "model_for_quality", "qualities", "shipped_models"]


def shipped_models() -> dict[str, Path]:
    """Name -> path of every model shipped with the package."""
    return STORE.shipped()


def qualities() -> list[int]:
    """The quality levels of the shipped models (``nc-q<N>``), ascending."""
    return STORE.qualities()


def model_for_quality(quality: int | None) -> str:
    return STORE.for_quality(quality)


def load_model(name_or_path: str) -> LoadedModel:
    return STORE.load(name_or_path)
