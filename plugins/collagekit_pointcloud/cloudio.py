"""Point-cloud files, checked input, and the unit-cube normalisation.

PLY (ASCII or binary, points or meshes) and the XYZ text formats are read and written by collagekit
itself (:mod:`collagekit_pointcloud.ply`), so they work on any machine; PCD, PTS and the OBJ, STL and
OFF meshes go through open3d (the ``3d`` extra) where it can be loaded.

A loaded cloud is a ``(1 c n)`` float32 tensor (the modality convention ``(1 c *spatial)`` with the
points as the one spatial axis): ``c = 3`` coordinates in the file's own units, or ``c = 6`` with RGB
colours in [0, 1] appended. Meshes (and PLY files with faces) are sampled to points, area-weighted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from collagekit.errors import CollagekitError
from collagekit.fileio import atomic_output, native_output
from collagekit_pointcloud import o3d
from collagekit_pointcloud.config import CLOUD_SUFFIXES, MESH_SUFFIXES, POINTCLOUD, SUFFIXES
from collagekit_pointcloud.ply import read_ply, write_ply

__all__ = ["POINTCLOUD", "SUFFIXES", "cloud_from_memory", "cloud_to_memory", "load_cloud", "save_cloud"]

TEXT_COLUMNS = {".xyz": 3, ".xyzn": 6, ".xyzrgb": 6}  # x y z, then normals or RGB in [0, 1]
MAX_FILE_BYTES = 2 << 30  # 2 GiB
MESH_SAMPLES = 50_000  # points sampled from a mesh (at least as many as it has vertices)


# ------------------------------------------------------------------ normalisation
@dataclass(frozen=True)
class Normalisation:
    """x_unit = (x - centre) / extent + 0.5: the cloud's bounding box centred in [0, 1]³, aspect kept."""

    centre: tuple[float, float, float]
    extent: float

    @staticmethod
    def of(points: Tensor) -> Normalisation:
        """(n 3) -> the normalisation that puts these points in the unit cube."""
        lo, hi = points.double().amin(0), points.double().amax(0)
        extent = float((hi - lo).max())
        if not extent > 0:
            raise CollagekitError("all points of the cloud are identical: there is no shape to fit")
        return Normalisation(tuple(float(c) for c in (lo + hi) / 2), extent)  # type: ignore[arg-type]

    def forward(self, points: Tensor) -> Tensor:
        """(n 3) file units -> (n 3) unit cube."""
        centre = torch.tensor(self.centre, dtype=torch.float64, device=points.device)
        return ((points.double() - centre) / self.extent + 0.5).to(points.dtype)

    def inverse(self, points: Tensor) -> Tensor:
        """(n 3) unit cube -> (n 3) file units."""
        centre = torch.tensor(self.centre, dtype=torch.float64, device=points.device)
        return ((points.double() - 0.5) * self.extent + centre).to(points.dtype)


# ------------------------------------------------------------------ loading
def _sample_mesh(vertices: np.ndarray, triangles: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Area-weighted uniform samples on a triangle mesh: (count 3)."""
    tri = vertices[triangles]  # f 3 3
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if not np.isfinite(area).all() or area.sum() <= 0:
        return vertices
    rng = np.random.default_rng(seed)
    face = rng.choice(len(tri), size=count, p=area / area.sum())
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1  # fold the unit square onto the triangle
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    a, b, c = tri[face, 0], tri[face, 1], tri[face, 2]
    return a + u[:, None] * (b - a) + v[:, None] * (c - a)


def _mesh_points(path: Path, vertices: np.ndarray, triangles: np.ndarray, max_points: int) -> np.ndarray:
    if triangles.max(initial=-1) >= len(vertices) or triangles.min(initial=0) < 0:
        raise CollagekitError(f"{path}: the mesh's faces index vertices that do not exist")
    if not np.isfinite(vertices).all():
        raise CollagekitError(f"{path} holds NaN or infinite coordinates")
    return _sample_mesh(vertices, triangles, min(max_points, max(MESH_SAMPLES, len(vertices))))


def _read_text(path: Path, suffix: str, max_points: int) -> tuple[np.ndarray, np.ndarray | None]:
    """x y z per line (.xyz), then normals (.xyzn) or RGB in [0, 1] (.xyzrgb)."""
    columns = TEXT_COLUMNS[suffix]
    with path.open("rb") as f:
        lines = sum(1 for line in f if line.strip())
    if lines > max_points:
        raise CollagekitError(f"{path} has {lines:,} points, above the limit of {max_points:,} (max_elements / 3)")
    try:
        table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise CollagekitError(f"{path} is not a {suffix} file of numbers ({exc})") from None
    if table.size == 0:
        return np.empty((0, 3)), None
    if table.shape[1] < columns:
        raise CollagekitError(f"{path}: a {suffix} line needs {columns} numbers, got {table.shape[1]}")
    return table[:, :3], (table[:, 3:6] if suffix == ".xyzrgb" else None)


def load_cloud(path: Path, max_elements: int) -> Tensor:
    """A point-cloud or mesh file -> (1 c n) float32, c = 3 or 6 (RGB in [0, 1]); every problem is one line."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CollagekitError(f"{path}: unknown point-cloud format {suffix or '(no suffix)'!r}; known: {', '.join(SUFFIXES)}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CollagekitError(f"{path} is {size:,} bytes, above the {MAX_FILE_BYTES:,}-byte limit for point clouds")
    max_points = max(1, max_elements // 3)
    colours = None
    chatter: list[str] = []
    if suffix == ".ply":
        ply = read_ply(path, max_points)
        points, colours = ply.vertices, ply.colours
        if ply.triangles is not None:
            points, colours = _mesh_points(path, points, ply.triangles, max_points), None
    elif suffix in TEXT_COLUMNS:
        points, colours = _read_text(path, suffix, max_points)
    else:
        open3d = o3d.load(f"reading {suffix} files")
        with native_output() as chatter:  # open3d's readers print their own complaints
            mesh = open3d.io.read_triangle_mesh(str(path)) if suffix in MESH_SUFFIXES else None
        if mesh is not None and len(mesh.triangles) > 0:
            points = _mesh_points(path, np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.triangles), max_points)
        elif suffix in MESH_SUFFIXES:
            raise CollagekitError(f"{path} could not be read as a mesh (no triangles found{_said(chatter)})")
        else:
            with native_output() as more:
                cloud = open3d.io.read_point_cloud(str(path))
            chatter += more
            points = np.asarray(cloud.points, dtype=np.float64)
            if cloud.has_colors() and len(cloud.colors) == len(points):
                colours = np.asarray(cloud.colors, dtype=np.float64)
    if len(points) == 0:
        raise CollagekitError(f"{path} holds no points (empty, or not a {suffix} file that can be read{_said(chatter)})")
    if len(points) > max_points:
        raise CollagekitError(f"{path} has {len(points):,} points, above the limit of {max_points:,} (max_elements / 3)")
    if not np.isfinite(points).all():
        raise CollagekitError(f"{path} holds NaN or infinite coordinates")
    if len(points) == 1:
        raise CollagekitError(f"{path} holds a single point: there is no shape to fit")
    if np.ptp(points, axis=0).max() == 0:
        raise CollagekitError(f"{path}: all {len(points):,} points are identical: there is no shape to fit")
    data = points if colours is None else np.concatenate([points, np.clip(colours, 0, 1)], 1)
    return torch.from_numpy(data.astype(np.float32)).T[None].contiguous()


# ------------------------------------------------------------------ saving
def save_cloud(data: Tensor, path: Path) -> None:
    """(1 c n) with c = 3 or 6 (RGB in [0, 1]) -> a cloud file (format by suffix; PLY binary with colours)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CLOUD_SUFFIXES:
        raise CollagekitError(f"cannot write point clouds as {suffix!r}; use one of {', '.join(CLOUD_SUFFIXES)}")
    if data.ndim != 3 or data.shape[0] != 1 or data.shape[1] not in (3, 6) or data.shape[2] < 1:
        raise CollagekitError(f"a point cloud to save must be (1 c n) with c = 3 or 6, got {tuple(data.shape)}")
    array = data[0].detach().double().cpu().numpy().T  # (n c)
    points, colours = array[:, :3], (np.clip(array[:, 3:], 0, 1) if array.shape[1] == 6 else None)
    with atomic_output(path) as tmp:
        if suffix == ".ply":
            write_ply(tmp, points, colours)
        elif suffix in (".xyz", ".xyzrgb"):
            rgb = colours if colours is not None else np.zeros_like(points)
            np.savetxt(tmp, points if suffix == ".xyz" else np.concatenate([points, rgb], 1), fmt="%.9g")
        else:
            open3d = o3d.load(f"writing {suffix} files")
            cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(np.ascontiguousarray(points)))
            if colours is not None:
                cloud.colors = open3d.utility.Vector3dVector(np.ascontiguousarray(colours))
            with native_output() as chatter:
                written = open3d.io.write_point_cloud(str(tmp), cloud, write_ascii=False, compressed=False)
            if not written:
                raise CollagekitError(f"open3d could not write {path}{_said(chatter)}")


def cloud_from_memory(data: Any, attrs: dict[str, Any]) -> Tensor:
    """Points in memory, (n 3) or (n 6) with RGB in [0, 1] appended (a numpy array or a tensor, open3d's
    ``np.asarray(cloud.points)`` layout) -> (1 c n) float32, checked like a file's points."""
    if attrs:
        raise CollagekitError(f"point clouds take no attributes, got {', '.join(attrs)}")
    if isinstance(data, Tensor):
        data = data.detach().cpu().numpy()
    if not isinstance(data, np.ndarray):
        raise CollagekitError(f"cannot read points from a {type(data).__name__}; give a path, a numpy array or a tensor (n 3)")
    if data.ndim != 2 or data.shape[1] not in (3, 6) or len(data) < 2:
        raise CollagekitError(f"points in memory must be (n 3) or (n 6) with n >= 2, got shape {data.shape}")
    table = data.astype(np.float64)
    if not np.isfinite(table).all():
        raise CollagekitError("the points hold NaN or infinite values")
    if np.ptp(table[:, :3], axis=0).max() == 0:
        raise CollagekitError(f"all {len(table):,} points are identical: there is no shape to fit")
    return torch.from_numpy(table.astype(np.float32)).T[None].contiguous()


def cloud_to_memory(z: Tensor) -> Tensor:
    """(1 c n) -> (n c): points in rows, RGB in [0, 1] after x y z when c = 6."""
    return z[0].T


def _said(chatter: list[str]) -> str:
    """What open3d printed, folded into our one line (its first message)."""
    return f"; open3d said: {chatter[0]}" if chatter else ""


def label_colours(labels: Tensor, maps: int) -> Tensor:
    """(n,) map labels -> (n 3) RGB in [0, 1]: evenly spaced hues, so neighbouring pieces differ."""
    hues = torch.arange(maps, dtype=torch.float64) / max(maps, 1)
    # golden-ratio stride through the hue circle: map k and k+1 get very different colours
    hues = (hues * maps * 0.61803398875) % 1.0
    palette = torch.stack([_hsv_to_rgb(float(h), 0.75, 0.95) for h in hues]).float()
    return palette[labels.long().cpu()]


def _hsv_to_rgb(h: float, s: float, v: float) -> Tensor:
    i = math.floor(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return torch.tensor(rgb, dtype=torch.float64)

