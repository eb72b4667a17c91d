"""PLY files without open3d: ASCII and binary (little and big endian) reading, binary writing.

What collagekit needs of a PLY file: the vertices' ``x y z``, their colours (``red green blue``, 8-bit
or float) when present, and polygon faces (split into triangles as fans) when the file is a mesh.
Every other element and property is read past and dropped. Sizes are checked against the file before
anything is allocated, and every malformation is one :class:`~collagekit.CollagekitError` line.

Shapes: ``n`` vertices, ``f`` triangles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collagekit.errors import CollagekitError

TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
MAX_HEADER_BYTES = 1 << 16
COLOURS = ("red", "green", "blue")
INDEX_NAMES = ("vertex_indices", "vertex_index")


@dataclass(frozen=True)
class Property:
    name: str
    dtype: str  # numpy type code without byte order
    count_dtype: str | None = None  # a list property: the type of its length


@dataclass(frozen=True)
class Element:
    name: str
    count: int
    properties: tuple[Property, ...]


@dataclass(frozen=True)
class PlyData:
    vertices: np.ndarray  # (n 3) float64
    colours: np.ndarray | None  # (n 3) in [0, 1]
    triangles: np.ndarray | None  # (f 3) vertex indices


def read_header(path: Path) -> tuple[str | None, list[Element], int]:
    """-> (byte order, or None for ASCII; the elements in file order; where the body starts)."""
    with path.open("rb") as f:
        head = f.read(MAX_HEADER_BYTES)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise CollagekitError(f"{path} is not a PLY file (no 'ply ... end_header' header in its first {MAX_HEADER_BYTES} bytes)")
    newline = head.find(b"\n", end)
    if newline < 0:
        raise CollagekitError(f"{path}: the PLY header does not end with a newline")
    order: str | None = None
    elements: list[Element] = []
    seen_format = False
    for raw in head[:end].decode("ascii", errors="replace").splitlines()[1:]:
        words = raw.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                order = FORMATS[words[1]]
                seen_format = True
            elif words[0] == "element":
                elements.append(Element(words[1], int(words[2]), ()))
            elif words[0] == "property" and words[1] == "list":
                _add(elements, Property(words[4], TYPES[words[3]], TYPES[words[2]]))
            elif words[0] == "property":
                _add(elements, Property(words[2], TYPES[words[1]]))
            else:
                raise ValueError
        except (IndexError, KeyError, ValueError):
            raise CollagekitError(f"{path}: cannot read the PLY header line {raw.strip()!r}") from None
    if not seen_format:
        raise CollagekitError(f"{path}: the PLY header has no format line")
    if any(e.count < 0 for e in elements):
        raise CollagekitError(f"{path}: the PLY header declares a negative element count")
    return order, elements, newline + 1


def _add(elements: list[Element], prop: Property) -> None:
    if not elements:
        raise ValueError("a property before any element")
    last = elements[-1]
    elements[-1] = Element(last.name, last.count, (*last.properties, prop))


def read_ply(path: Path, max_vertices: int) -> PlyData:
    """Vertices, colours and triangles of a PLY file, refusing more than ``max_vertices`` vertices."""
    order, elements, start = read_header(path)
    vertex = next((e for e in elements if e.name == "vertex"), None)
    if vertex is None or not {"x", "y", "z"} <= {p.name for p in vertex.properties}:
        raise CollagekitError(f"{path}: the PLY file has no vertex element with x, y and z")
    if vertex.count > max_vertices:
        raise CollagekitError(f"{path} declares {vertex.count:,} points, above the limit of {max_vertices:,} (max_elements / 3)")
    body = path.read_bytes()[start:]
    tables = _read_ascii(path, body, elements) if order is None else _read_binary(path, body, elements, order)
    rows = tables["vertex"]
    vertices = np.stack([rows["x"], rows["y"], rows["z"]], axis=1).astype(np.float64)
    colours = None
    if all(c in rows for c in COLOURS):
        rgb = np.stack([rows[c] for c in COLOURS], axis=1).astype(np.float64)
        colours = rgb / 255.0 if all(np.issubdtype(rows[c].dtype, np.integer) for c in COLOURS) else rgb
    triangles = tables.get("face")
    return PlyData(vertices, colours, triangles if triangles is not None and len(triangles) else None)


def _read_binary(path: Path, body: bytes, elements: list[Element], order: str) -> dict[str, dict | np.ndarray]:
    """The vertex element as one structured array; the faces too when every polygon has the same
    size (the usual triangle mesh), else polygon by polygon. Other elements are skipped."""
    out: dict[str, dict | np.ndarray] = {}
    offset = 0
    for element in elements:
        lists = [p for p in element.properties if p.count_dtype]
        if element.name == "vertex":
            if lists:
                raise CollagekitError(f"{path}: a list property in the PLY vertex element is not supported")
            dtype = np.dtype([(p.name, order + p.dtype) for p in element.properties])
            rows = _frombuffer(path, body, dtype, element.count, offset)
            offset += dtype.itemsize * element.count
            out["vertex"] = {p.name: rows[p.name] for p in element.properties}
        elif element.name == "face" and any(p.name in INDEX_NAMES for p in lists):
            out["face"], offset = _binary_faces(path, body, element, order, offset)
        elif lists:
            break  # an element of variable size that collagekit does not need: what follows is dropped
        else:
            offset += element.count * np.dtype([(p.name, order + p.dtype) for p in element.properties]).itemsize
    if "vertex" not in out:
        raise CollagekitError(f"{path}: the PLY vertex element could not be read")
    return out


def _frombuffer(path: Path, body: bytes, dtype: np.dtype, count: int, offset: int) -> np.ndarray:
    if offset + dtype.itemsize * count > len(body):
        raise CollagekitError(f"{path} is shorter than its PLY header says (truncated?)")
    return np.frombuffer(body, dtype=dtype, count=count, offset=offset)


def _binary_faces(path: Path, body: bytes, element: Element, order: str, offset: int) -> tuple[np.ndarray, int]:
    """(f 3) triangles of a face element whose one list property holds the vertex indices."""
    index = next(p for p in element.properties if p.count_dtype and p.name in INDEX_NAMES)
    if element.count == 0:
        return np.empty((0, 3), dtype=np.int64), offset
    count_type = np.dtype(order + (index.count_dtype or "u1"))
    first = int(_frombuffer(path, body, count_type, 1, offset + _before(element, index, order))[0])
    fields = []
    for p in element.properties:
        if p.count_dtype:
            fields += [(f"{p.name}#n", order + p.count_dtype), (p.name, order + p.dtype, (first,))]
        else:
            fields.append((p.name, order + p.dtype))
    dtype = np.dtype(fields)
    if offset + dtype.itemsize * element.count <= len(body):
        rows = np.frombuffer(body, dtype=dtype, count=element.count, offset=offset)
        if all((rows[f"{p.name}#n"] == first).all() for p in element.properties if p.count_dtype):
            return _fan(rows[index.name].astype(np.int64)), offset + dtype.itemsize * element.count
    # Polygons of different sizes: one at a time.
    polygons: list[np.ndarray] = []
    for _ in range(element.count):
        for p in element.properties:
            if p.count_dtype:
                n = int(_frombuffer(path, body, np.dtype(order + p.count_dtype), 1, offset)[0])
                offset += np.dtype(p.count_dtype).itemsize
                values = _frombuffer(path, body, np.dtype(order + p.dtype), n, offset)
                offset += values.nbytes
                if p is index:
                    polygons.append(values.astype(np.int64))
            else:
                offset += np.dtype(p.dtype).itemsize
    return _polygons(polygons), offset


def _before(element: Element, prop: Property, order: str) -> int:
    """Bytes of the scalar properties before ``prop`` in the element's first record."""
    size = 0
    for p in element.properties:
        if p is prop:
            return size
        if p.count_dtype:
            raise CollagekitError("faces with several list properties before the vertex indices are not supported")
        size += np.dtype(order + p.dtype).itemsize
    return size


def _read_ascii(path: Path, body: bytes, elements: list[Element]) -> dict[str, dict | np.ndarray]:
    lines = body.decode("ascii", errors="replace").splitlines()
    out: dict[str, dict | np.ndarray] = {}
    at = 0
    for element in elements:
        if at + element.count > len(lines):
            raise CollagekitError(f"{path} is shorter than its PLY header says (truncated?)")
        block = lines[at : at + element.count]
        at += element.count
        if element.name == "vertex":
            try:
                table = np.array([line.split() for line in block], dtype=np.float64).reshape(element.count, len(element.properties))
            except ValueError:
                raise CollagekitError(f"{path}: a PLY vertex line does not hold {len(element.properties)} numbers") from None
            out["vertex"] = {p.name: table[:, i].astype(p.dtype) for i, p in enumerate(element.properties)}
        elif element.name == "face":
            out["face"] = _ascii_faces(path, block, element)
    return out


def _ascii_faces(path: Path, block: list[str], element: Element) -> np.ndarray:
    polygons = []
    for line in block:
        try:
            values = [int(float(v)) for v in line.split()]
            at = 0
            for p in element.properties:
                if p.count_dtype:
                    n = values[at]
                    if p.name in INDEX_NAMES:
                        polygons.append(np.array(values[at + 1 : at + 1 + n], dtype=np.int64))
                    at += 1 + n
                else:
                    at += 1
        except (ValueError, IndexError):
            raise CollagekitError(f"{path}: cannot read the PLY face line {line.strip()!r}") from None
    return _polygons(polygons)


def _polygons(polygons: list[np.ndarray]) -> np.ndarray:
    triangles = [_fan(p[None]) for p in polygons if len(p) >= 3]
    return np.concatenate(triangles) if triangles else np.empty((0, 3), dtype=np.int64)


def _fan(polygons: np.ndarray) -> np.ndarray:
    """(f m) polygons -> (f (m-2)) triangles (0, i, i+1), as (f*(m-2) 3)."""
    m = polygons.shape[1]
    if m < 3:
        return np.empty((0, 3), dtype=np.int64)
    fans = [np.stack([polygons[:, 0], polygons[:, i], polygons[:, i + 1]], axis=1) for i in range(1, m - 1)]
    return np.stack(fans, axis=1).reshape(-1, 3)


def write_ply(path: Path, points: np.ndarray, colours: np.ndarray | None = None) -> None:
    """(n 3) points, optional (n 3) colours in [0, 1] -> a binary little-endian PLY (float32 x y z,
    8-bit colours) at ``path`` (the caller makes the write atomic)."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    header = ["ply", "format binary_little_endian 1.0", "comment written by collagekit", f"element vertex {len(points)}"]
    header += [f"property float {axis}" for axis in "xyz"]
    if colours is not None:
        fields += [(c, "u1") for c in COLOURS]
        header += [f"property uchar {c}" for c in COLOURS]
    rows = np.empty(len(points), dtype=np.dtype(fields))
    for i, axis in enumerate("xyz"):
        rows[axis] = points[:, i]
    if colours is not None:
        rgb = np.clip(np.round(np.asarray(colours, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
        for i, c in enumerate(COLOURS):
            rows[c] = rgb[:, i]
    with Path(path).open("wb") as f:
        f.write(("\n".join([*header, "end_header"]) + "\n").encode("ascii"))
        f.write(rows.tobytes())
