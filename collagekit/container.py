"""The ``.clg`` container: one versioned file format for every modality and codec.

A ``.clg`` file is a safetensors file (tensors only, nothing executable) whose metadata entry
``collagekit`` holds a JSON header::

    {"format": "collagekit", "version": 1, "codec": "<registered codec>", "modality": "<modality>",
     "created_by": {"collagekit": "0.1.0", "<plugin>": "<version>"}, ...codec-specific fields}

A codec registered under the header's ``codec`` name decodes it; the modality named in the header
saves the decoded signal. Reading checks sizes before allocating and turns every malformation into a
one-line :class:`CollagekitError`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor

from collagekit.errors import CollagekitError
from collagekit.fileio import atomic_output, check_input

if TYPE_CHECKING:
    from collagekit.config import Options
    from collagekit.registry import Registry

FORMAT = "collagekit"
VERSION = 1
SUFFIX = ".clg"
# Header key for what a modality's writer needs beside the samples (audio: sample_rate); see modality.py.
SIGNAL_ATTRS = "signal_attrs"
MAX_FILE_BYTES = 1 << 30
MAX_HEADER_BYTES = 1 << 22


@dataclass
class Container:
    header: dict[str, Any]
    tensors: dict[str, Tensor] = field(default_factory=dict)

    def require(self, key: str) -> Any:
        if key not in self.header:
            raise CollagekitError(f"corrupt .clg file: the header has no {key!r}")
        return self.header[key]


class Codec(Protocol):
    """Decodes containers whose header names it. Registered through ``register_codecs``.

    ``options`` are the ``key=value`` (or ``--key value``) extras of ``collagekit decompress``, e.g. a
    point count for point clouds, declared by ``decode_options`` (an :class:`~collagekit.config.Options`
    model, shown by ``collagekit list codec``) and checked with :func:`~collagekit.config.parse_options`.
    ``encode_options`` likewise declares ``collagekit compress -O key=value``; None: the codec only decodes.
    """

    name: str
    encode_options: type[Options] | None
    decode_options: type[Options]

    def decode(
        self, container: Container, registry: Registry, *, scale: int, device: torch.device, options: dict[str, Any]
    ) -> Any:
        """Return the decoded data in the form its modality's ``save`` takes ((1 c *spatial) for grids),
        at ``scale`` x the encoded resolution."""
        ...


class CompressingCodec(Codec, Protocol):
    """A codec that also compresses: ``collagekit compress --method NAME``."""

    def encode(
        self, x: Any, registry: Registry, *, quality: int | None, device: torch.device, options: dict[str, Any]
    ) -> Container:
        """Compress one loaded datum (what its modality's ``load`` returns) into a container."""
        ...


def to_bytes(container: Container) -> bytes:
    header = {"format": FORMAT, "version": VERSION, **container.header}
    tensors = {k: v.detach().contiguous().cpu() for k, v in container.tensors.items()}
    # Compact JSON: the header counts in every honest bits-per-pixel figure.
    return save_tensors(tensors, metadata={FORMAT: json.dumps(header, sort_keys=True, separators=(",", ":"))})


def write_container(path: str | Path, container: Container) -> int:
    """Write atomically; return the file size in bytes."""
    data = to_bytes(container)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


def from_bytes(data: bytes, source: str = "<bytes>") -> Container:
    def bad(why: str) -> CollagekitError:
        return CollagekitError(f"{source} is not a valid .clg file: {why}")

    if len(data) < 8:
        raise bad("it is too short")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(MAX_HEADER_BYTES, len(data) - 8):
        raise bad("the header length is out of range (truncated or not a .clg file)")
    try:
        raw = json.loads(data[8 : 8 + header_len])
        meta = raw.get("__metadata__") or {}
        header = json.loads(meta[FORMAT])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise bad("no collagekit header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise bad("no collagekit header")
    version = header.get("version")
    if version != VERSION:
        raise bad(f"format version {version!r} is not supported by this collagekit (reads version {VERSION})")
    # Check every tensor's declared extent against the file before safetensors allocates anything.
    for name, spec in raw.items():
        if name == "__metadata__":
            continue
        try:
            start, end = spec["data_offsets"]
            count = 1
            for dim in spec["shape"]:
                count *= int(dim)
        except (KeyError, TypeError, ValueError):
            raise bad(f"tensor {name!r} is described wrongly") from None
        if not 0 <= start <= end <= len(data) - 8 - header_len or count < 0:
            raise bad(f"tensor {name!r} lies outside the file (truncated?)")
    try:
        tensors = load_tensors(data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise bad(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    return Container(header=header, tensors=tensors)


def read_container(path: str | Path) -> Container:
    path = check_input(path, "compressed file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CollagekitError(f"{path} is {size} bytes, more than the {MAX_FILE_BYTES}-byte limit for .clg files")
    return from_bytes(path.read_bytes(), str(path))
