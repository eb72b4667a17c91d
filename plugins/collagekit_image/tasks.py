"""Image tasks. ``image_fractalize``: the whole image as the one domain plus its 7 dihedral variants."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import ClassVar

from collagekit.grid_fractalize import GridFractalizeTask
from collagekit_image.config import ImageFractalizeConfig

SAMPLE = "kodim23_256.png"


def sample_image() -> Path:
    """A 256x256 crop of Kodak's kodim23, shipped so that recipes run without any data download."""
    return Path(str(files("collagekit_image") / "samples" / SAMPLE))


class ImageFractalize(GridFractalizeTask):
    modality: ClassVar[str] = "image"

    Config = ImageFractalizeConfig

    def sample_path(self) -> Path:
        return sample_image()
