"""Image tasks. ``image_fractalize``: the whole image as the one domain plus its 7 dihedral variants."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from collagekit.config import CollageConfig
from collagekit.fractalize import GridFractalizeConfig, GridFractalizeTask

SAMPLE = "kodim23_256.png"


def sample_image() -> Path:
    """A 256x256 crop of Kodak's kodim23, shipped so that recipes run without any data download."""
    return Path(str(files("collagekit_image") / "samples" / SAMPLE))


class ImageFractalize(GridFractalizeTask):
    modality: ClassVar[str] = "image"

    class Config(GridFractalizeConfig):
        task: Literal["image_fractalize"] = "image_fractalize"
        output: str = Field("fractal.png", description="decoded attractor (PNG keeps it lossless)")
        collage: CollageConfig = Field(
            default_factory=lambda: {
                "partitioner": {"name": "tiles2d", "range_size": 8, "domain_size": "full"},
                "auxiliary": [{"name": "dihedral"}],
            },
            validate_default=True,
        )

    def sample_path(self) -> Path:
        return sample_image()
