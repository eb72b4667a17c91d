"""Entry module of the point-cloud plugin: hook implementations only. Everything is registered lazily with
its Config or declaration from :mod:`collagekit_pointcloud.config`, so listing and validating import no torch.

PLY and XYZ files need nothing beyond the core dependencies; open3d (the ``3d`` extra) is imported only
when a PCD, PTS, OBJ, STL or OFF file is read or written, and its absence is a line naming the extra.
"""

from __future__ import annotations

from collagekit.hookspecs import Register, hookimpl
from collagekit.lazy import Lazy


@hookimpl
def register_modalities(register: Register) -> None:
    from collagekit_pointcloud.config import POINTCLOUD

    register(POINTCLOUD)


@hookimpl
def register_tasks(register: Register) -> None:
    from collagekit_pointcloud.config import PointCloudFractalizeConfig

    register(Lazy("collagekit_pointcloud.tasks:PointCloudFractalize", Config=PointCloudFractalizeConfig))


@hookimpl
def register_codecs(register: Register) -> None:
    from collagekit_pointcloud.config import IFSDecodeOptions

    register(Lazy("collagekit_pointcloud.ifscodec:IFSCodec", name="ifs", encode_options=None, decode_options=IFSDecodeOptions))


@hookimpl
def register_benchmarks(register: Register) -> None:
    from collagekit_pointcloud.config import IFS_BENCH

    register(IFS_BENCH)
