"""Trained Neural Collage models: shipped ones (``models/<name>.safetensors`` in this package) and
user-trained ones given by path.

A model file is safetensors (weights only) whose metadata holds ``format``, ``name``, ``version``,
``config`` (the :class:`ModelConfig` as JSON) and how it was made. Files name their model by name,
version and a SHA-256 prefix of the weights file, so a decoder never silently uses other weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from pydantic import ValidationError

from collagekit.errors import CollagekitError
from collagekit_image.neural import ModelConfig, NeuralCollageModel

MODEL_FORMAT = "collagekit-image-model"
QUALITY_PREFIX = "nc-q"
MAX_MODEL_BYTES = 256 << 20


def models_dir() -> Path:
    return Path(str(files("collagekit_image") / "models"))


def shipped_models() -> dict[str, Path]:
    """Name -> path of every model shipped with the package."""
    folder = models_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.safetensors"))}


def qualities() -> list[int]:
    """The quality levels of the shipped models (``nc-q<N>``), ascending."""
    return sorted(int(name[len(QUALITY_PREFIX) :]) for name in shipped_models() if name[len(QUALITY_PREFIX) :].isdigit())


def model_for_quality(quality: int | None) -> str:
    levels = qualities()
    if not levels:
        raise CollagekitError("no Neural Collage model is installed (collagekit_image/models is empty); pass --model PATH")
    if quality is None:
        return f"{QUALITY_PREFIX}{levels[len(levels) // 2]}"
    if quality not in levels:
        raise CollagekitError(f"no shipped model for quality {quality}; choose from: {', '.join(map(str, levels))}")
    return f"{QUALITY_PREFIX}{quality}"


@dataclass(frozen=True)
class LoadedModel:
    model: NeuralCollageModel
    name: str
    version: str
    sha256: str
    metadata: dict[str, str]

    def reference(self) -> dict[str, str]:
        """What a .clg file records about the model that made it."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


def resolve(name_or_path: str) -> Path:
    """A shipped model's name, or a path to a ``.safetensors`` model file."""
    shipped = shipped_models()
    if name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CollagekitError(f"model file {name_or_path!r} does not exist")
        return path
    names = ", ".join(shipped) or "none installed"
    raise CollagekitError(f"unknown Neural Collage model {name_or_path!r}; choose from: {names} (or give a .safetensors path)")


def load_model(name_or_path: str) -> LoadedModel:
    path = resolve(name_or_path)
    stat = path.stat()
    return _load(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> LoadedModel:
    """Cached on (path, mtime, size): batch compression and benchmarks load each model once."""
    from safetensors import SafetensorError, safe_open

    from collagekit.training import load_weights

    if size > MAX_MODEL_BYTES:
        raise CollagekitError(f"model file {path!r} is {size:,} bytes, larger than any Neural Collage model")
    data = Path(path).read_bytes()
    try:
        with safe_open(path, framework="pt") as f:
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise CollagekitError(f"model file {path!r} is not a readable safetensors file ({exc})") from None
    if metadata.get("format") != MODEL_FORMAT:
        raise CollagekitError(f"{path!r} is not a Neural Collage image model (its metadata has no format {MODEL_FORMAT!r})")
    try:
        cfg = ModelConfig.model_validate(json.loads(metadata["config"]))
    except (KeyError, ValueError, ValidationError) as exc:
        raise CollagekitError(f"model file {path!r} has a malformed config: {str(exc).splitlines()[0]}") from None
    model = NeuralCollageModel(cfg)
    load_weights(model, path)
    model.eval().requires_grad_(False)
    return LoadedModel(
        model=model,
        name=metadata.get("name", Path(path).stem),
        version=metadata.get("version", "0"),
        sha256=hashlib.sha256(data).hexdigest()[:16],
        metadata=metadata,
    )
