"""Point-cloud files through open3d (the ``3d`` extra), checked input, and the unit-cube normalisation.

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
from collagekit.modality import Modality

CLOUD_SUFFIXES = (".ply", ".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
MESH_SUFFIXES = (".obj", ".stl", ".off")
SUFFIXES = CLOUD_SUFFIXES + MESH_SUFFIXES
COLOUR_SUFFIXES = (".ply", ".pcd", ".xyzrgb", ".pts")
MAX_FILE_BYTES = 2 << 30  # 2 GiB
MESH_SAMPLES = 50_000  # points sampled from a mesh (at least as many as it has vertices)


def open3d() -> Any:
    """The open3d module, or a one-line error that names the extra to install."""
    try:
        import open3d as o3d
    except ImportError as exc:
        raise CollagekitError(
            f'point clouds need open3d, which is not usable here ({exc}); install it with: pip install "collagekit[3d]"'
        ) from None
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


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
def _ply_vertex_count(path: Path) -> int | None:
    """The vertex count declared in a PLY header (read before open3d allocates anything)."""
    with path.open("rb") as f:
        head = f.read(65536)
    if not head.startswith(b"ply"):
        return None
    for line in head.split(b"end_header")[0].splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"element" and parts[1] == b"vertex":
            try:
                return int(parts[2])
            except ValueError:
                return None
    return None


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
    declared = _ply_vertex_count(path) if suffix == ".ply" else None
    if declared is not None and declared > max_points:
        raise CollagekitError(f"{path} declares {declared:,} points, above the limit of {max_points:,} (max_elements / 3)")
    o3d = open3d()
    colours = None
    with native_output() as chatter:  # open3d's readers print their own complaints ("RPly: ...")
        mesh = o3d.io.read_triangle_mesh(str(path)) if suffix in MESH_SUFFIXES or suffix == ".ply" else None
    if mesh is not None and len(mesh.triangles) > 0:
        vertices, triangles = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.triangles)
        if triangles.max(initial=-1) >= len(vertices) or triangles.min(initial=0) < 0:
            raise CollagekitError(f"{path}: the mesh's faces index vertices that do not exist")
        if not np.isfinite(vertices).all():
            raise CollagekitError(f"{path} holds NaN or infinite coordinates")
        points = _sample_mesh(vertices, triangles, min(max_points, max(MESH_SAMPLES, len(vertices))))
    elif suffix in MESH_SUFFIXES:
        raise CollagekitError(f"{path} could not be read as a mesh (no triangles found{_said(chatter)})")
    else:
        with native_output() as more:
            cloud = o3d.io.read_point_cloud(str(path))
        chatter += more
        points = np.asarray(cloud.points, dtype=np.float64)
        if cloud.has_colors() and len(cloud.colors) == len(points):
            colours = np.asarray(cloud.colors, dtype=np.float64)
    if len(points) == 0:
        raise CollagekitError(f"{path} holds no points (empty, or not a {suffix} file open3d can read{_said(chatter)})")
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
    o3d = open3d()
    array = data[0].detach().double().cpu().numpy().T
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.ascontiguousarray(array[:, :3])))
    if array.shape[1] == 6:
        cloud.colors = o3d.utility.Vector3dVector(np.ascontiguousarray(np.clip(array[:, 3:], 0, 1)))
    with atomic_output(path) as tmp:
        with native_output() as chatter:
            written = o3d.io.write_point_cloud(str(tmp), cloud, write_ascii=False, compressed=False)
        if not written:
            raise CollagekitError(f"open3d could not write {path}{_said(chatter)}")


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


POINTCLOUD = Modality(
    name="pointcloud",
    suffixes=SUFFIXES,
    load=load_cloud,
    save=save_cloud,
    fractalize_task="pointcloud_fractalize",
    description="3D point clouds (PLY/PCD/XYZ/PTS) and meshes (PLY/OBJ/STL/OFF) through open3d",
)
