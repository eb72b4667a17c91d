"""What the point-cloud plugin declares before anything runs: the ``pointcloud_fractalize`` task's Config
(with its partitioners and fit settings), the codec's options, the modality and the benchmark. Imports
no torch (see :mod:`collagekit.lazy`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from collagekit.bench import Benchmark
from collagekit.config import MAX_SEED, Options
from collagekit.lazy import Lazy
from collagekit.modality import DEFAULT_MAX_ELEMENTS, Modality
from collagekit.tasks import FileTaskConfig
from collagekit_pointcloud.partition import PointPartitioner

CLOUD_SUFFIXES = (".ply", ".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
MESH_SUFFIXES = (".obj", ".stl", ".off")
SUFFIXES = CLOUD_SUFFIXES + MESH_SUFFIXES
MAX_POINTS = 1 << 28  # 268 M points: 3.2 GB of float32 coordinates
SIGMA_MAX = 0.98  # largest singular value a fitted map can reach: ‖A‖₂ < 0.98

POINTCLOUD = Modality(
    name="pointcloud",
    suffixes=SUFFIXES,
    load=Lazy("collagekit_pointcloud.cloudio:load_cloud"),
    save=Lazy("collagekit_pointcloud.cloudio:save_cloud"),
    from_memory=Lazy("collagekit_pointcloud.cloudio:cloud_from_memory"),
    to_memory=Lazy("collagekit_pointcloud.cloudio:cloud_to_memory"),
    fractalize_task="pointcloud_fractalize",
    description="3D point clouds (PLY, XYZ; also PCD, PTS with open3d) and meshes (PLY; also OBJ, STL, OFF with open3d)",
)


class FitSettings(BaseModel):
    """How hard to fit. Defaults fit a 10k-point cloud with 2-8 maps in seconds on a 2-core CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sample: int = Field(1024, ge=16, le=1 << 16, description="points of the cloud used per fitting step")
    restarts: int = Field(32, ge=1, le=256, description="initial rotations/reflections tried per map")
    register_steps: int = Field(60, ge=0, le=10_000, description="per-map registration steps (Adam)")
    steps: int = Field(300, ge=0, le=100_000, description="joint refinement steps (Adam)")
    lr: float = Field(0.02, gt=0, le=1.0, description="Adam learning rate (cosine-decayed)")
    attractor_weight: float = Field(1.0, ge=0, description="weight of the attractor Chamfer next to the collage Chamfer")
    depth: int = Field(4, ge=1, le=32, description="map applications the attractor gradient flows through")
    trials: int | None = Field(
        None,
        ge=1,
        le=64,
        description="initialisations (partition + restarts) tried, the best is refined; default: 32 // K, between 4 and 8 "
        "(a trial costs about K times one map's work, and few maps leave more wrong basins)",
    )
    trial_steps: int = Field(100, ge=0, le=10_000, description="refinement steps that judge each trial")
    trial_sigma_max: float = Field(
        0.85,
        gt=0,
        le=SIGMA_MAX,
        description="bound on ‖A_k‖₂ while initialising and judging trials (the final refinement allows up to 0.98)",
    )
    check: int = Field(25, ge=1, le=10_000, description="steps between measurements of the attractor Chamfer (the best state is kept)")


class IFSDecodeOptions(Options):
    points: int | None = Field(None, ge=1, le=MAX_POINTS, description="points to render (default: the file's), times --scale")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="the chaos game's seed (default: the file's)")


class PointCloudFractalizeConfig(FileTaskConfig):
    task: Literal["pointcloud_fractalize"] = "pointcloud_fractalize"
    input: str | None = Field(None, description="cloud or mesh to fractalize (default: the shipped sample)")
    output: str = Field("fractal.ply", description="the rendered attractor, coloured by map (.ply keeps colours)")
    png: str | None = Field(None, description="optional PNG picture of the attractor")
    maps: int = Field(8, ge=1, le=64, description="K: the number of affine maps")
    points: int | None = Field(None, ge=1, le=MAX_POINTS, description="points to render (default: as many as the input)")
    scale: int = Field(1, ge=1, le=64, description="multiplies the rendered point count (points x scale)")
    max_elements: int = Field(DEFAULT_MAX_ELEMENTS, ge=3, description="refuse clouds with more coordinates")
    up: Literal["x", "y", "z"] = Field("y", description="the cloud's vertical axis, for the PNG view")
    partitioner: PointPartitioner = Field(default_factory=lambda: {"name": "kmeans"}, validate_default=True)
    fit: FitSettings = Field(default_factory=FitSettings, description="how hard to fit")


# The seeds of the random IFS targets, per split: the fitter's settings are chosen on "validation" and
# reported on "test" (the benchmark). A split's targets are the first ``targets`` seeds of its range;
# the ranges do not overlap, so no count makes a validation target a test target.
SPLIT_SEEDS = {"test": range(0, 1000), "validation": range(1000, 2000)}
SPLIT_TARGETS = {"test": 50, "validation": 20}  # the default count: test seeds 0-49, validation 1000-1019


class IfsBenchOptions(FitSettings, Options):
    """Also every fit setting (steps=100, trials=2, ...): see ``collagekit schema``, pointcloud_fractalize's fit."""

    split: Literal["test", "validation"] = Field(
        "test",
        description="test: the benchmark (the Sierpinski tetrahedron, the fern and random IFS from seeds 0, 1, ...); "
        "validation: random IFS from seeds 1000, 1001, ... only, to choose settings on (results in ifs_validation.md)",
    )
    targets: int | None = Field(
        None, ge=0, le=len(SPLIT_SEEDS["test"]), description="random contractive IFS fitted (default: 50 for test, 20 for validation)"
    )
    points: int = Field(10_000, ge=16, description="attractor points each known target is fitted from")
    speed_points: int = Field(20_000_000, ge=1, description="points the chaos-game speed test renders")
    repeats: int = Field(5, ge=1, description="timed chaos-game runs (the median is reported)")
    scans: int = Field(2, ge=0, description="the first N .ply scans of the data folder")
    ks: list[int] = Field([2, 4, 8], description="map counts K each scan is fitted with")
    pictures: str | None = Field(None, description="folder for the scan pictures (default: OUT/../images; none: no pictures)")
    parts: str | list[str] | None = Field(
        None, description="which parts to run: known, speed, scans (default: all three for test; validation has only known)"
    )


IFS_BENCH = Benchmark(
    name="ifs",
    description="3D IFS: fit known fractals (Chamfer, time), chaos-game speed, real scans as K grows",
    run=Lazy("collagekit_pointcloud.bench:run"),
    default_data="pointclouds",
    options=IfsBenchOptions,
)
