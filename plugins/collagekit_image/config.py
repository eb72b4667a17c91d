"""What the image plugin declares before anything runs: its components' and tasks' Configs, the
codec's options, the image modality and the benchmarks. Imports no torch (see :mod:`collagekit.lazy`)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from collagekit.bench import Benchmark
from collagekit.config import (
    CollageConfig,
    ComponentConfig,
    GridConfig,
    Options,
    ShortlistConfig,
    StreamPriorsConfig,
    StrictModel,
    TrainingConfig,
)
from collagekit.lazy import Lazy
from collagekit.modality import Modality
from collagekit.tasks import CodecTrainConfig, FileTaskConfig, GridFractalizeConfig

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEFAULT_MAX_PIXELS = 40_000_000
PRUNE_BITS = 16.0  # sparse-collage: chosen on the validation split (docs/results/sparse_prune_validation.md)
DEBLOCK_TOL = 1e-2  # sparse-collage: its own decode for the deblocking fit; chosen on the validation split (docs/results/deblock_tol_validation.md)
DEFAULT_CHUNK = 512  # tiles per encoder pass: bounds the feature maps' memory on large images

IMAGE = Modality(
    name="image",
    suffixes=SUFFIXES,
    load=Lazy("collagekit_image.imageio:load_image"),
    save=Lazy("collagekit_image.imageio:save_image"),
    from_memory=Lazy("collagekit_image.imageio:image_from_memory"),
    to_memory=Lazy("collagekit_image.imageio:image_to_memory"),
    fractalize_task="image_fractalize",
    default_codec="neural-collage",
    description="2D images (grey or RGB) through Pillow",
)


# ---------------------------------------------------------------- components
class TilesConfig(GridConfig):
    name: Literal["tiles2d"] = "tiles2d"


class DihedralConfig(ComponentConfig):
    name: Literal["dihedral"] = "dihedral"


# ---------------------------------------------------------------- the Neural Collage model and codec
class PlaneConfig(StrictModel):
    """One plane's collage and encoder (luma and chroma each have one)."""

    tile: int = Field(32, ge=8, le=256, description="tile size: each tile is one collage signal")
    range_size: int = Field(8, ge=2, le=64, description="range cell size (a power of two)")
    domain_size: int = Field(16, ge=2, le=256, description="domain cell size inside the tile")
    domain_stride: int = Field(8, ge=1, le=256, description="step between domain cells")
    dihedral: bool = Field(False, description="add the 7 rotations/flips of every domain as sources")
    patches: int = Field(16, ge=1, le=256, description="dataset-level learned patches (auxiliary domains)")
    width: int = Field(64, ge=8, le=512, description="encoder feature channels")
    contraction: float = Field(0.9, gt=0, lt=1, description="rho: bound on the collage map's Lipschitz constant")


class ModelConfig(StrictModel):
    """Architecture of a Neural Collage image codec (stored in its weights file's metadata)."""

    luma: PlaneConfig = Field(default_factory=PlaneConfig)
    chroma: PlaneConfig = Field(default_factory=PlaneConfig)
    max_symbol: int = Field(255, ge=1, le=2047, description="codes are clamped to [-max_symbol, max_symbol]")


class NeuralCollageEncodeOptions(Options):
    model: str | None = Field(None, description="a shipped model's name or a .safetensors path (default: nc-q<quality>)")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="refuse larger images")
    chunk: int = Field(DEFAULT_CHUNK, gt=0, description="tiles per encoder pass: bounds the feature maps' memory on large images")
    rdo: bool = Field(True, description="pick each tile's code by the model's rate-distortion objective (false: round)")
    deblock: bool = Field(True, description="fit the deblocking post-filter's strengths and store them")


class NeuralCollageDecodeOptions(Options):
    model: str | None = Field(None, description="the model file, when the one the code names is not installed")
    tol: float | None = Field(None, gt=0, description="fixed-point tolerance (default: the file's)")
    max_iter: int | None = Field(None, gt=0, description="most fixed-point iterations (default: the file's)")


class SparseCollageEncodeOptions(Options):
    lmbda: float | None = Field(None, gt=0, le=1e6, description="rate-distortion weight in 8-bit grey levels squared per bit (default: from the quality)")
    range_size: int = Field(16, ge=4, le=64, description="largest range cell (top of the quadtree; a power of two)")
    levels: int = Field(3, ge=1, le=5, description="quadtree levels: range sizes range_size, range_size/2, ...")
    domain_stride: int = Field(2, ge=1, le=8, description="step between domains, in range sizes at each level (domains are twice a range)")
    dihedral: bool = Field(True, description="also name the 7 rotations/flips of every domain")
    sources: int = Field(1, ge=1, le=4, description="domains named per range cell")
    weight_levels: int = Field(7, ge=1, le=31, description="weight lattice steps on each side of 0 (contraction / steps apart)")
    contraction: float = Field(0.95, gt=0, lt=1, description="bound on the sum of a range's weight magnitudes")
    bias_step: float = Field(4.0, gt=0, le=32, description="bias lattice step in 8-bit grey levels")
    chroma: Literal["half", "full"] = Field("half", description="chroma planes at half or full resolution")
    search: Literal["shortlist", "exhaustive"] = Field(
        "shortlist", description="compare each range with the shortlist network's candidates only (amortized), or with every source"
    )
    shortlist: str = Field("shortlist", description="the search shortlist: a shipped name or a .safetensors path (sparse_collage_train)")
    probes: int = Field(4, ge=1, le=64, description="classes of the shortlist each range is compared with (more: slower, closer to exhaustive)")
    prune_bits: float = Field(
        PRUNE_BITS, ge=0, le=1e3, description="search no deeper under a cell whose best code errs by at most lmbda times this (0: search the whole quadtree)"
    )
    refine_steps: int = Field(
        0, ge=0, le=1000, description="gradient steps per plane group on the cut code's weights and biases, on their lattices, against the decoded error"
    )
    prior: str = Field(
        "auto",
        description="trained stream priors (sparse_collage_prior_train): 'auto' (the shipped set's nearest lmbda, default settings only), 'none', a shipped name or a .safetensors path",
    )
    deblock: bool = Field(True, description="fit the deblocking post-filter's strengths and store them")
    deblock_tol: float = Field(
        DEBLOCK_TOL, gt=0, le=0.1, description="solver tolerance of the encoder's own decode, which the deblocking strengths are fitted on (the file's decoder keeps its own)"
    )
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="refuse larger images")


class SparseCollageDecodeOptions(Options):
    prior: str | None = Field(None, description="the stream priors' file, when those the code names are not installed")
    tol: float | None = Field(None, gt=0, description="fixed-point tolerance (default: the file's)")
    max_iter: int | None = Field(None, gt=0, le=100_000, description="most fixed-point iterations (default: the file's)")


# ---------------------------------------------------------------- tasks
class ImageFractalizeConfig(GridFractalizeConfig):
    task: Literal["image_fractalize"] = "image_fractalize"
    output: str = Field("fractal.png", description="decoded attractor (PNG keeps it lossless)")
    collage: CollageConfig = Field(
        default_factory=lambda: {
            "partitioner": {"name": "tiles2d", "range_size": 8, "domain_size": "full"},
            "auxiliary": [{"name": "dihedral"}],
        },
        validate_default=True,
    )


class ImageTrainConfig(CodecTrainConfig):
    task: Literal["image_train"] = "image_train"
    data: str | None = Field(None, description="folder of training images (default: $COLLAGEKIT_DATA/train_images); never Kodak")
    out_dir: str = Field("outputs/image_train", description="checkpoints, the training log and (by default) the exported model")
    lmbda: float = Field(0.01, gt=0, description="rate-distortion trade-off: higher = more bits, better quality")
    quantiser: Literal["ste", "noise"] = Field("ste", description="how the distortion term sees quantisation")
    crop: int = Field(128, ge=64, le=1024, description="training crop size (a multiple of 2 x the chroma tile)")
    hold_out_validation: bool = Field(
        True, description="skip the validation split's files (collagekit_image/validation_images.txt): design decisions are judged on them"
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig(steps=2000, batch_size=16, lr=1e-3, warmup_steps=100, log_every=50, checkpoint_every=500))


class SparseCollageTrainConfig(CodecTrainConfig):
    task: Literal["sparse_collage_train"] = "sparse_collage_train"
    data: str | None = Field(None, description="folder of training images (default: $COLLAGEKIT_DATA/train_images); never Kodak")
    out_dir: str = Field("outputs/sparse_collage_train", description="checkpoints, the training log and (by default) the exported shortlist")
    lmbda: float = Field(
        0.5, gt=0, description="weight of the search's cost (the share of pairs compared, times the classes) against missing the exhaustive search's pick"
    )
    images: int = Field(64, ge=1, le=10_000, description="training images the examples are searched in (drawn with the seed)")
    min_rms: float = Field(2.0, ge=0, description="leave out range cells flatter than this RMS in grey levels (they are coded flat)")
    probes: int = Field(4, ge=1, le=64, description="classes listed per range in the reported recall and compared share (the codec's default)")
    options: SparseCollageEncodeOptions = Field(default_factory=SparseCollageEncodeOptions, description="the codec options whose layout the examples are searched with")
    hold_out_validation: bool = Field(
        True, description="skip the validation split's files (collagekit_image/validation_images.txt): design decisions are judged on them"
    )
    model: ShortlistConfig = Field(default_factory=lambda: ShortlistConfig(sign="abs"))
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig(steps=3000, batch_size=1024, lr=3e-3, warmup_steps=100, log_every=100, checkpoint_every=1000))


class SparseCollagePriorTrainConfig(CodecTrainConfig):
    task: Literal["sparse_collage_prior_train"] = "sparse_collage_prior_train"
    data: str | None = Field(None, description="folder of training images (default: $COLLAGEKIT_DATA/train_images); never Kodak")
    out_dir: str = Field("outputs/sparse_collage_prior_train", description="checkpoints, the training log and (by default) the exported priors")
    lmbda: float = Field(gt=0, le=1e6, description="the codec's rate point the streams are coded at (-O lmbda: grey levels^2 per bit; higher = fewer bits)")
    images: int = Field(64, ge=1, le=10_000, description="training images whose streams are coded (drawn with the seed)")
    options: SparseCollageEncodeOptions = Field(default_factory=SparseCollageEncodeOptions, description="the codec options the training images are coded with")
    hold_out_validation: bool = Field(
        True, description="skip the validation split's files (collagekit_image/validation_images.txt): design decisions are judged on them"
    )
    model: StreamPriorsConfig | None = Field(None, description="derived from options: the streams those settings write")
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(steps=300, batch_size=8, lr=0.05, weight_decay=0.0, warmup_steps=0, lr_schedule="cosine", log_every=50, checkpoint_every=100)
    )


class ImageCompressConfig(FileTaskConfig):
    task: Literal["image_compress"] = "image_compress"
    input: str | None = Field(None, description="image to compress (default: the sample shipped with collagekit_image)")
    output: str = Field("compressed.png", description="the decoded image (PNG keeps it lossless)")
    metrics: str | None = Field(None, description="optional JSON file for the metrics (CompressAI's results shape)")
    quality: int | None = Field(None, ge=1, description="shipped model nc-q<quality> (default: the middle one)")
    model: str | None = Field(None, description="a shipped model's name or a .safetensors path; overrides quality")
    scale: int = Field(1, ge=1, le=64, description="decode the output at this integer scale")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="refuse larger images")


# ---------------------------------------------------------------- benchmarks
class ImageFitOptions(Options):
    """Any other key=value is a field of the image_fractalize recipe (e.g. encoder.steps=50)."""

    model_config = ConfigDict(extra="allow")
    section: Literal["fit", "step", "all"] = Field("all", description="fit: uniform vs adaptive fractalization; step: the cost of one collage step")
    limit: int = Field(24, ge=1, description="the first N kodim*.png images (section fit)")
    step_image: str = Field("kodim23.png", description="the image whose 512x512 centre crop the step section codes")


class KodakOptions(Options):
    limit: int = Field(10_000, ge=1, description="at most the first N images")
    images: str | None = Field(None, description="which images of the data folder: every image file (default), 'validation' (the held-out split of train_images) or a file listing names")
    results: str | None = Field(None, description="results file name (default: kodak, or kodak_validation with images=validation)")
    repeats: int = Field(1, ge=1, description="timed runs per image and point of every timed codec (the median is reported)")
    models: str | None = Field(None, description="comma-separated model names or files (default: every shipped nc-q*)")
    anchors: str | None = Field(None, description="comma-separated anchor codecs: jpeg, webp, jpeg2000, avif, jpegxl (default: those available here)")
    pifs: bool = Field(True, description="also run the classical PIFS codec")
    sparse: bool = Field(True, description="also run the sparse-collage search codec over its lmbda ladder")
    pifs_exhaustive: int = Field(0, ge=0, description="also sweep PIFS with its exhaustive search on the first N images (slow): the paper's speed comparison")


class SparseBenchOptions(Options):
    images: str | None = Field("validation", description="which images of the data folder: 'validation' (default), a file listing names, or null for every image")
    limit: int = Field(10_000, ge=1, description="at most the first N images")
    variants: str = Field("base", description="codec settings to compare: 'base;domain_stride=1;bias_step=4.0,weight_levels=5' (base: the defaults)")
    lambdas: str | float | None = Field(None, description="comma-separated lmbda ladder (default: bench kodak's)")
    repeats: int = Field(1, ge=1, description="timed runs per image, variant and lmbda (the median is reported)")
    results: str = Field("sparse_collage_validation", description="results file name")


IMAGE_FIT = Benchmark(
    name="image-fit",
    description="fractalize 256x256 Kodak crops (uniform vs adaptive at equal code size); cost of one collage step",
    run=Lazy("collagekit_image.bench:run"),
    default_data="kodak",
    options=ImageFitOptions,
)

SPARSE_BENCH = Benchmark(
    name="sparse-collage",
    description="sparse-collage codec settings side by side on the image validation split: BD-PSNR/BD-rate vs JPEG and PIFS, times",
    run=Lazy("collagekit_image.sparse_bench:run"),
    default_data="train_images",
    options=SparseBenchOptions,
)

KODAK_BENCH = Benchmark(
    name="kodak",
    description="Neural Collage codec on Kodak (or --data DIR): BD-rate/BD-PSNR and fixed-rate PSNR vs JPEG, WebP, JPEG 2000, AVIF, JPEG XL, PIFS; times",
    run=Lazy("collagekit_image.kodak:run"),
    default_data="kodak",
    options=KodakOptions,
)
