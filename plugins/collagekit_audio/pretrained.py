"""Trained Neural Collage audio models: shipped ones (``models/ac-q<N>.safetensors`` in this package),
retired ones (``models/retired/``: earlier weights of a shipped name, kept so the files they wrote still
decode) and user-trained ones given by path, through the core's :class:`collagekit.pretrained.ModelStore`."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from collagekit.pretrained import LoadedModel, ModelStore
from collagekit_audio.neural import AudioCollageModel, AudioModelConfig

MODEL_FORMAT = "collagekit-audio-model"

STORE = ModelStore(
    package="collagekit_audio",
    format=MODEL_FORMAT,
    prefix="ac-q",
    config=AudioModelConfig,
    build=AudioCollageModel,
    what="Neural Collage audio model",
)


@lru_cache(maxsize=1)
def retired() -> dict[str, Path]:
    """SHA-256 prefix (as a .clg file records it) -> retired weights file."""
    folder = STORE.folder() / "retired"
    paths = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    return {hashlib.sha256(p.read_bytes()).hexdigest()[:16]: p for p in paths}


def model_for_code(reference: Any, override: Any = None) -> LoadedModel:
    """The model a .clg file names: the shipped one, or the retired weights with the hash it records
    (a file written before the shipped models were retrained), or ``override`` (a name or path)."""
    if not override and isinstance(reference, dict) and isinstance(reference.get("sha256"), str):
        override = retired().get(reference["sha256"])
    return STORE.for_code(reference, override)
