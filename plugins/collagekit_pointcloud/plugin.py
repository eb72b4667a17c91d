"""Entry module of the point-cloud plugin: hook implementations only; heavy imports stay inside the hooks.

open3d (the ``3d`` extra) is imported only when a cloud is read or written, so the plugin loads, and
``collagekit plugins`` works, without it; reading a cloud then fails with a line naming the extra.
"""

from __future__ import annotations

from collagekit.hookspecs import Register, hookimpl


@hookimpl
def register_modalities(register: Register) -> None:
    from collagekit_pointcloud.cloudio import POINTCLOUD

    register(POINTCLOUD)


@hookimpl
def register_tasks(register: Register) -> None:
    from collagekit_pointcloud.tasks import PointCloudFractalize

    register(PointCloudFractalize)


@hookimpl
def register_codecs(register: Register) -> None:
    from collagekit_pointcloud.ifscodec import IFSCodec

    register(IFSCodec())


@hookimpl
def register_benchmarks(register: Register) -> None:
    from collagekit_pointcloud.bench import IFS_BENCH

    register(IFS_BENCH)
