"""What the VAE plugin declares before anything runs: the heads' and the ``vae_mnist`` task's Configs and
the benchmark. Imports no torch (see :mod:`collagekit.lazy`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from collagekit.bench import Benchmark
from collagekit.config import CollageConfig, ComponentConfig, Options, Slot, StrictModel, TrainingConfig, slot_default
from collagekit.lazy import Lazy
from collagekit.tasks import TaskConfig

# The MNIST test file (10,000 images, the only split this project has) is cut three ways: the first 8,000
# train, the next 1,000 validate (every choice between variants is made there), the last 1,000 test (the
# final figure of the shipped models, scored only when asked).
TRAIN_COUNT = 8000
VALIDATION_COUNT = 1000
HeldOut = Literal["validation", "test"]


# ---------------------------------------------------------------- heads
class GaussianConvConfig(ComponentConfig):
    name: Literal["gaussian-conv"] = "gaussian-conv"
    hidden: int = Field(64, ge=4, le=1024, description="hidden channels")
    kernel: int = Field(3, ge=1, le=7, description="size of the first convolution (odd: the grid keeps its size)")

    @field_validator("kernel")
    @classmethod
    def _odd(cls, kernel: int) -> int:
        if kernel % 2 == 0:
            raise ValueError(f"must be odd so that the grid keeps its size, got {kernel}")
        return kernel


class GaussianResidualConfig(ComponentConfig):
    name: Literal["gaussian-residual"] = "gaussian-residual"
    hidden: int = Field(64, ge=4, le=1024, description="hidden channels")
    blocks: int = Field(2, ge=1, le=16, description="residual blocks (3x3 then 1x1 convolution each)")


# ---------------------------------------------------------------- the model and its task
class VAEConfig(StrictModel):
    """The model: encoder width, latent sizes, and which likelihood decodes the lower latent."""

    decoder: Literal["collage", "conv"] = Field("collage", description="collage fixed point, or the conv baseline")
    width: int = Field(32, ge=4, le=512, description="channels of the first encoder convolution (then 2x)")
    z_dim: int = Field(32, ge=1, le=1024, description="size of the top (global) latent z")
    prior: Annotated[ComponentConfig, Slot("head")] = slot_default("gaussian-conv")
    posterior: Annotated[ComponentConfig, Slot("head")] = slot_default("gaussian-conv")
    conv_latent: int = Field(16, ge=1, le=1024, description="latent channels per cell of the conv baseline")
    code_latent: int = Field(
        0, ge=0, le=1024,
        description="collage decoder: latent channels per cell that a small conv network maps to the collage code "
        "(0: the latent is the code itself, one channel per collage parameter)",
    )  # fmt: skip
    residual_posterior: bool = Field(
        False, description="q(w | x, z) as an offset and a factor on p(w | z) (NVAE's residual normal), not a free Gaussian"
    )
    collage: CollageConfig = Field(
        default_factory=lambda: {
            "partitioner": {"name": "tiles2d", "range_size": 4, "domain_size": 8, "domain_stride": 4},
            # Dataset-level patches give each 4x4 cell stroke detail that pooled 8x8 domains lack
            # (test ELBO -128.1 -> -110.9 nats at beta 1, docs/results/vae.md).
            "auxiliary": [{"name": "learned", "count": 16}],
            "contraction": 0.9,
        },
        validate_default=True,
    )
    solver: Annotated[ComponentConfig, Slot("solver")] = slot_default("anderson", tol=1e-3, max_iter=60, gradient="implicit")


class VAEMnistConfig(TaskConfig):
    task: Literal["vae_mnist"] = "vae_mnist"
    data: str | None = Field(None, description="folder with the MNIST IDX files (default: $COLLAGEKIT_DATA/mnist)")
    output: str = Field("outputs/vae_mnist", description="folder for checkpoints, model.safetensors and metrics.json")
    train_count: int = Field(TRAIN_COUNT, ge=1, description="the first images of the file train")
    validation_count: int = Field(VALIDATION_COUNT, ge=1, description="the next images validate; the rest are the test images")
    split: HeldOut = Field(
        "validation", description="the held-out images the trained model is scored on: validation (for choosing) or test (the final report)"
    )
    beta: float = Field(1.0, gt=0, le=100, description="weight of the rate (KL) in the training loss")
    kl_warmup_steps: int = Field(0, ge=0, description="ramp the KL weight up linearly to beta over this many steps (0: none)")
    model: VAEConfig = Field(default_factory=dict, validate_default=True)
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(steps=1500, batch_size=64, lr=2e-3, warmup_steps=50, grad_clip=5.0,
                                               checkpoint_every=250, log_every=50)
    )  # fmt: skip
    eval_samples: int = Field(1, ge=1, le=100, description="posterior samples per held-out image in the reported ELBO")


# ---------------------------------------------------------------- benchmark
class VAEBenchOptions(Options):
    models: str | None = Field(None, description="a folder searched for model.safetensors files (default: the shipped models)")
    section: str | None = Field(None, description="the results section this run replaces (default: shipped, or sweep with models=)")
    note: str = Field("", description="a line of text kept with the section")
    split: HeldOut | None = Field(
        None, description="the held-out images scored: validation or test (default: test for the shipped models, validation with models=)"
    )
    samples: int = Field(1, ge=1, description="posterior samples per held-out image")
    repeats: int = Field(3, ge=1, description="timed sampling runs (the median is reported)")
    train_count: int = Field(TRAIN_COUNT, ge=1, description="the first images of the file are training images")
    validation_count: int = Field(VALIDATION_COUNT, ge=1, description="the next images validate; the rest are the test images")

    @field_validator("note", mode="before")
    @classmethod
    def _plain(cls, note: Any) -> Any:
        if not isinstance(note, str):  # options are read as YAML: "a: b" is a mapping
            raise ValueError(f"note= must be plain text, YAML read it as a {type(note).__name__}: avoid ': ' or quote the whole note")
        return note


VAE_BENCH = Benchmark(
    name="vae",
    description="Collage VAE vs conv VAE on MNIST: validation or test rate, distortion, ELBO; β sweep plot; magnification figure (one section per run)",
    run=Lazy("collagekit_vae.bench:run"),
    default_data="mnist",
    options=VAEBenchOptions,
)
