"""Trained models of learned codecs: the ones a plugin ships (``<package>/models/<name>.safetensors``)
and user-trained ones given by path.

A model file is safetensors (weights only) whose metadata holds ``format``, ``name``, ``version``,
``config`` (the architecture as JSON) and how it was made. Compressed files name their model by
name, version and a SHA-256 prefix of the weights file, so a decoder never silently uses other
weights. Each learned codec has one :class:`ModelStore`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from torch import nn

from collagekit.errors import CollagekitError

MAX_MODEL_BYTES = 256 << 20


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    config: Any  # the architecture, parsed from the file's metadata (the store's ``config`` type)
    name: str
    version: str
    sha256: str
    metadata: dict[str, str]

    def reference(self) -> dict[str, str]:
        """What a .clg file records about the model that made it."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class ModelStore:
    """The models of one learned codec.

    package: the plugin package whose ``models/`` folder holds the shipped files.
    format: the ``format`` metadata value its files carry.
    prefix: shipped models named ``<prefix><N>`` are quality level N.
    config: the architecture's pydantic model; build: config -> the (untrained) module.
    what: how errors name the models ("Neural Collage model").
    subfolder: the folder under the package that holds them (a codec with several kinds of model
    keeps each kind in its own).
    option: the decode option that names another file of this kind (in error messages).
    """

    package: str
    format: str
    prefix: str
    config: type[BaseModel]
    build: Callable[[Any], nn.Module]
    what: str
    subfolder: str = "models"
    option: str = "model"

    def folder(self) -> Path:
        return Path(str(files(self.package) / self.subfolder))

    def shipped(self) -> dict[str, Path]:
        """Name -> path of every model shipped with the package."""
        folder = self.folder()
        return {p.stem: p for p in sorted(folder.glob("*.safetensors"))} if folder.is_dir() else {}

    def qualities(self) -> list[int]:
        """The quality levels of the shipped models, ascending."""
        n = len(self.prefix)
        return sorted(int(name[n:]) for name in self.shipped() if name.startswith(self.prefix) and name[n:].isdigit())

    def for_quality(self, quality: int | None) -> str:
        """The shipped model for ``--quality`` (None: the middle level)."""
        levels = self.qualities()
        if not levels:
            raise CollagekitError(f"no {self.what} is installed ({self.package}/models is empty); pass --model PATH")
        if quality is None:
            return f"{self.prefix}{levels[len(levels) // 2]}"
        if quality not in levels:
            raise CollagekitError(f"no shipped model for quality {quality}; choose from: {', '.join(map(str, levels))}")
        return f"{self.prefix}{quality}"

    def resolve(self, name_or_path: str) -> Path:
        """A shipped model's name, or a path to a ``.safetensors`` model file."""
        shipped = self.shipped()
        if name_or_path in shipped:
            return shipped[name_or_path]
        path = Path(name_or_path)
        if path.suffix == ".safetensors":
            if not path.is_file():
                raise CollagekitError(f"model file {name_or_path!r} does not exist")
            return path
        names = ", ".join(shipped) or "none installed"
        raise CollagekitError(f"unknown {self.what} {name_or_path!r}; choose from: {names} (or give a .safetensors path)")

    def load(self, name_or_path: str) -> LoadedModel:
        path = self.resolve(name_or_path)
        stat = path.stat()
        return _load(self, str(path.resolve()), stat.st_mtime_ns, stat.st_size)

    def retired(self) -> dict[str, Path]:
        """SHA-256 prefix (as a .clg file records it) -> earlier weights of a shipped name, kept in
        ``models/retired/`` so that the files they wrote still decode."""
        return _retired(self.folder() / "retired")

    def for_code(self, reference: Any, override: Any = None) -> LoadedModel:
        """The model a compressed file's header ``model`` entry names (or ``override``: a name or path),
        else the retired weights with the hash it records, refused unless its weights are the very
        ones that made the file."""
        if not isinstance(reference, dict) or not all(isinstance(reference.get(k), str) for k in ("name", "version", "sha256")):
            raise CollagekitError("corrupt .clg file: the model reference is malformed")
        if not override:  # a file written before its shipped name was retrained: the retired weights
            override = self.retired().get(reference["sha256"])
        loaded = self.load(str(override) if override else reference["name"])
        if loaded.sha256 != reference["sha256"]:
            raise CollagekitError(
                f"this file was made with model {reference['name']!r} version {reference['version']} (weights {reference['sha256']}), "
                f"but the model found has weights {loaded.sha256} (version {loaded.version}); pass {self.option}=PATH to the matching weights"
            )
        return loaded


@lru_cache(maxsize=8)
def _retired(folder: Path) -> dict[str, Path]:
    paths = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    return {hashlib.sha256(p.read_bytes()).hexdigest()[:16]: p for p in paths}


@lru_cache(maxsize=16)
def _load(store: ModelStore, path: str, mtime_ns: int, size: int) -> LoadedModel:
    """Cached on (store, path, mtime, size): batch compression and benchmarks load each model once."""
    from safetensors import SafetensorError, safe_open

    from collagekit.training import load_weights

    if size > MAX_MODEL_BYTES:
        raise CollagekitError(f"model file {path!r} is {size:,} bytes, larger than any {store.what}")
    data = Path(path).read_bytes()
    try:
        with safe_open(path, framework="pt") as f:
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise CollagekitError(f"model file {path!r} is not a readable safetensors file ({exc})") from None
    if metadata.get("format") != store.format:
        raise CollagekitError(f"{path!r} is not a {store.what} (its metadata has no format {store.format!r})")
    try:
        cfg = store.config.model_validate(json.loads(metadata["config"]))
    except (KeyError, ValueError, ValidationError) as exc:
        raise CollagekitError(f"model file {path!r} has a malformed config: {str(exc).splitlines()[0]}") from None
    model = store.build(cfg)
    load_weights(model, path)
    model.eval().requires_grad_(False)
    return LoadedModel(
        model=model,
        config=cfg,
        name=metadata.get("name", Path(path).stem),
        version=metadata.get("version", "0"),
        sha256=hashlib.sha256(data).hexdigest()[:16],
        metadata=metadata,
    )
