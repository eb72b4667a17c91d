"""A PNG picture of a coloured cloud for people to look at: orthographic view, z-buffered, depth-shaded.

Pure numpy + Pillow (core dependencies), so pictures need no display, no OpenGL and no matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from collagekit.errors import CollagekitError
from collagekit.fileio import atomic_output


def _view(azimuth: float, elevation: float) -> np.ndarray:
    """(3 3) rotation: world -> camera (x right, y up, z towards the viewer)."""
    a, e = math.radians(azimuth), math.radians(elevation)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(e), -math.sin(e)], [0, math.sin(e), math.cos(e)]])
    # look along -y after the azimuth turn, tilted down by the elevation; world z is up
    to_camera = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]])
    return to_camera @ rx.T @ rz


def render_png(cloud: Tensor, path: str | Path, **view: Any) -> None:
    """(1 6 n) or (1 3 n) cloud -> a ``size`` x ``size`` PNG; ``view``: the keywords of :func:`draw`."""
    render_panels([cloud], path, **view)


def render_panels(clouds: Sequence[Tensor], path: str | Path, **view: Any) -> None:
    """Several clouds drawn side by side, each in its own ``size`` x ``size`` panel, into one PNG."""
    if Path(path).suffix.lower() != ".png":
        raise CollagekitError(f"the picture {str(path)!r} must end in .png")
    array = np.concatenate([draw(cloud, **view) for cloud in clouds], 1)
    with atomic_output(path) as tmp:
        Image.fromarray(array).save(tmp, optimize=True)


def draw(
    cloud: Tensor,
    *,
    size: int = 512,
    azimuth: float = 35.0,
    elevation: float = 20.0,
    up: str = "y",
    splat: int = 1,
) -> np.ndarray:
    """(1 6 n) or (1 3 n) cloud -> (size size 3) uint8 picture. ``up``: the cloud's vertical axis (x, y or z)."""
    if cloud.ndim != 3 or cloud.shape[1] not in (3, 6):
        raise CollagekitError(f"a cloud to draw must be (1 c n) with c = 3 or 6, got {tuple(cloud.shape)}")
    data = cloud[0].detach().double().cpu().numpy().T
    xyz = data[:, :3]
    colour = data[:, 3:] if data.shape[1] == 6 else np.full((len(data), 3), 0.2)
    # put the requested axis up (world z)
    order = {"x": [1, 2, 0], "y": [0, 2, 1], "z": [0, 1, 2]}[up]
    xyz = xyz[:, order]
    xyz = xyz - (xyz.min(0) + xyz.max(0)) / 2
    cam = xyz @ _view(azimuth, elevation).T
    half = np.abs(cam[:, :2]).max() or 1.0
    margin = 0.92
    px = ((cam[:, 0] / half * margin + 1) / 2 * (size - 1)).round().astype(np.int64)
    py = ((1 - (cam[:, 1] / half * margin + 1) / 2) * (size - 1)).round().astype(np.int64)
    depth = cam[:, 2]
    span = np.ptp(depth) or 1.0
    shade = 0.45 + 0.55 * (depth - depth.min()) / span  # nearer is brighter
    rgb = np.clip(colour * shade[:, None], 0, 1)
    offsets = [(dx, dy) for dx in range(splat) for dy in range(splat)]
    xs = np.concatenate([px + dx for dx, _ in offsets])
    ys = np.concatenate([py + dy for _, dy in offsets])
    zs = np.tile(depth, len(offsets))
    cs = np.tile(rgb, (len(offsets), 1))
    inside = (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
    xs, ys, zs, cs = xs[inside], ys[inside], zs[inside], cs[inside]
    # z-buffer: per pixel keep the nearest point (largest camera z)
    pixel = ys * size + xs
    order_idx = np.lexsort((-zs, pixel))
    first = np.unique(pixel[order_idx], return_index=True)[1]
    keep = order_idx[first]
    image = np.ones((size * size, 3))
    image[pixel[keep]] = cs[keep]
    return (image.reshape(size, size, 3) * 255).round().astype(np.uint8)
