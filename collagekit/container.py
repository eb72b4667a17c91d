"""The ``.clg`` container: one versioned file format for every modality and codec.

A ``.clg`` file is a safetensors file (tensors only, nothing executable) whose metadata entry
``collagekit`` holds a JSON header::

    {"format": "collagekit", "version": 1, "codec": "<registered codec>", "modality": "<modality>",
     "created_by": {"collagekit": "0.1.0", "<plugin>": "<version>"}, ...codec-specific fields}

A codec registered under the header's ``codec`` name decodes it; the modality named in the header
saves the decoded signal. Reading checks sizes before allocating and turns every malformation into a
one-line :class:`CollagekitError`.

Integrity: a second metadata entry ``crc32`` holds the CRC-32 (8 hex digits) of the header's JSON
text, the tensors' descriptions (name, dtype, shape, offsets) and the tensor data, so a damaged byte
anywhere in a file (a shape, a setting, a weight) is refused rather than decoded into something else. Files written before it existed carry no
``crc32`` and still decode, unchecked; any other metadata entry is refused (a damaged key name must
not pass for an old file). The CRC guards against damage, not against forgery: anyone can recompute it.

Header values are checked before use with :func:`header_int`, :func:`header_number` and
:func:`header_shape` (type, finiteness, range), and tensors with :meth:`Container.tensor` (dtype and
shape): a header is data from anywhere.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
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
MAX_HEADER_DEPTH = 32  # nesting of the JSON header; collagekit's own headers use 4 levels
CHECKSUM = "crc32"  # the metadata entry beside FORMAT
MAX_TENSOR_DIMS = 8


@dataclass
class Container:
    header: dict[str, Any]
    tensors: dict[str, Tensor] = field(default_factory=dict)

    def require(self, key: str) -> Any:
        if key not in self.header:
            raise CollagekitError(f"corrupt .clg file: the header has no {key!r}")
        return self.header[key]

    def writers(self) -> str:
        """``"core 0.1.0, image 0.1.0"``: the plugins the header says wrote the file (for error messages)."""
        makers = self.header.get("created_by")
        text = ", ".join(f"{k} {v}" for k, v in makers.items()) if isinstance(makers, dict) else "unknown"
        return text if len(text) <= 200 else text[:197] + "..."

    def tensor(self, key: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
        """The tensor ``key``, refused unless it has exactly this shape and dtype (a float32 tensor
        relabelled int32 has the same bytes and would otherwise be read as other numbers)."""
        t = self.tensors.get(key)
        if t is None or tuple(t.shape) != tuple(shape) or t.dtype != dtype:
            found = "missing" if t is None else f"{str(t.dtype).removeprefix('torch.')} {tuple(t.shape)}"
            raise CollagekitError(f"corrupt .clg file: tensor {key!r} should be {str(dtype).removeprefix('torch.')} {tuple(shape)}, found {found}")
        if t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
            raise CollagekitError(f"corrupt .clg file: tensor {key!r} holds NaN or infinite values")
        return t


# ---------------------------------------------------------------- header values
def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def header_int(value: Any, what: str, lo: int, hi: int) -> int:
    """A header integer in ``[lo, hi]`` (not a bool, not a float that happens to be whole)."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CollagekitError(f"corrupt .clg file: {what} must be an integer from {lo:,} to {hi:,}, got {_shown(value)}")
    return value


def header_number(value: Any, what: str, lo: float, hi: float) -> float:
    """A finite header number in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
        raise CollagekitError(f"corrupt .clg file: {what} must be a number from {lo:g} to {hi:g}, got {_shown(value)}")
    return float(value)


def header_shape(value: Any, what: str, ndim: int | tuple[int, ...], max_elements: int) -> tuple[int, ...]:
    """A list of ``ndim`` positive integers (``ndim``: a count or the allowed counts) whose product is at
    most ``max_elements``."""
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if not isinstance(value, list) or len(value) not in allowed:
        raise CollagekitError(f"corrupt .clg file: {what} must be a list of {' or '.join(map(str, allowed))} sizes, got {_shown(value)}")
    shape = tuple(header_int(v, what, 1, max_elements) for v in value)
    if math.prod(shape) > max_elements:
        raise CollagekitError(f"corrupt .clg file: {what} {list(shape)} holds more than {max_elements:,} values")
    return shape


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
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False)
    # The tensor table and data do not depend on the metadata: serialise once without it to checksum them.
    plain = save_tensors(tensors)
    (table_len,) = struct.unpack("<Q", plain[:8])
    table = json.loads(plain[8 : 8 + table_len])
    return _in_fixed_order(save_tensors(tensors, metadata={FORMAT: text, CHECKSUM: _checksum(text, table, plain[8 + table_len :])}))


def _in_fixed_order(data: bytes) -> bytes:
    """safetensors writes the metadata entries in a hash map's order, which changes from run to run:
    rewrite the table with them sorted (and the tensors in the order of their data), so the same code
    is the same bytes. Same entries, same compact JSON, so the same length and the data unmoved."""
    (length,) = struct.unpack("<Q", data[:8])
    table = json.loads(data[8 : 8 + length])
    meta = table.pop("__metadata__")
    ordered = {"__metadata__": dict(sorted(meta.items())), **dict(sorted(table.items(), key=lambda item: item[1]["data_offsets"]))}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > length:  # not expected (the same entries), but never move the data
        return data
    return data[:8] + text + b" " * (length - len(text)) + data[8 + length :]


def _checksum(header: str, table: dict[str, Any], data: bytes) -> str:
    """CRC-32 of the header text, every tensor's description (name, dtype, shape, place) and the data."""
    described = "".join(
        f"{name}\0{spec['dtype']}\0{spec['shape']}\0{spec['data_offsets']}\n" for name, spec in sorted(table.items()) if name != "__metadata__"
    )
    return f"{zlib.crc32(data, zlib.crc32((header + described).encode())):08x}"


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion (a hostile header may nest thousands deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_HEADER_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


class NonFinite(ValueError):
    """A header number that is not finite (its text is the message)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFinite(text[:40])
    return value


def _no_constant(text: str) -> Any:
    raise NonFinite(text)


def _sizes(value: Any) -> bool:
    """Whether a safetensors shape or offset pair is a list of non-negative integers."""
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


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
    except (ValueError, RecursionError):
        raise bad("its table of contents is not valid JSON (damaged, or not a .clg file)") from None
    meta = raw.get("__metadata__") if isinstance(raw, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get(FORMAT), str):
        raise bad("no collagekit header")
    text = meta[FORMAT]
    try:
        # Infinity, NaN and numbers too large for a float (1e999) are never valid header values.
        header = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:  # deeper than Python's json parser goes: far above the limit
        raise bad(f"its header is nested more than {MAX_HEADER_DEPTH} levels deep") from None
    except NonFinite as exc:
        raise bad(f"its header holds the non-finite number {exc}") from None
    except ValueError:
        raise bad("its header is not valid JSON (damaged)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise bad("no collagekit header")
    if _depth(header) > MAX_HEADER_DEPTH:
        raise bad(f"its header is nested more than {MAX_HEADER_DEPTH} levels deep")
    unknown = sorted(set(meta) - {FORMAT, CHECKSUM})
    if unknown:
        raise bad(f"unknown metadata {', '.join(map(repr, unknown))} (damaged?)")
    version = header.get("version")
    if version != VERSION:
        raise bad(f"format version {version!r} is not supported by this collagekit (reads version {VERSION})")
    # Check every tensor's declared extent against the file before safetensors allocates anything.
    for name, spec in raw.items():
        if name == "__metadata__":
            continue
        offsets = spec.get("data_offsets") if isinstance(spec, dict) else None
        shape = spec.get("shape") if isinstance(spec, dict) else None
        dtype = spec.get("dtype") if isinstance(spec, dict) else None
        if not (isinstance(dtype, str) and _sizes(offsets) and len(offsets) == 2 and _sizes(shape) and len(shape) <= MAX_TENSOR_DIMS):
            raise bad(f"tensor {name!r} is described wrongly")
        start, end = offsets
        if not start <= end <= len(data) - 8 - header_len:
            raise bad(f"tensor {name!r} lies outside the file (truncated?)")
    if CHECKSUM in meta and meta[CHECKSUM] != _checksum(text, raw, data[8 + header_len :]):
        raise bad("its checksum does not match its contents (the file is damaged)")
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
