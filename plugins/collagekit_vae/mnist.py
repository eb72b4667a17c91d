"""MNIST as IDX files (gzip or plain), dynamically binarised.

Only the 10k test split is available to this project. :func:`split` cuts it three ways: the first 8,000
images train (``TRAIN_COUNT``), the next 1,000 validate (``VALIDATION_COUNT``: every choice between
variants is made on them), the last 1,000 test (the final figure, scored only when asked). Dynamic binarisation draws every pixel as Bernoulli(intensity / 255)
afresh each time an image is used, so the model never sees one fixed binary version of a digit.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from collagekit.errors import CollagekitError
from collagekit_vae.config import TRAIN_COUNT, VALIDATION_COUNT

IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
IDX_UBYTE_3D = 0x00000803  # unsigned bytes, three dimensions: count, rows, columns
MAX_IMAGES = 1_000_000  # refuse headers that promise more (an unbounded allocation otherwise)


def images_path(folder: str | Path) -> Path:
    """The images file in an MNIST folder (gzip or plain IDX)."""
    folder = Path(folder)
    for name in (IMAGES_FILE, IMAGES_FILE.removesuffix(".gz")):
        if (folder / name).is_file():
            return folder / name
    raise CollagekitError(f"no {IMAGES_FILE} in {str(folder)!r}; point data= at a folder holding the MNIST IDX files")


def read_idx_images(path: str | Path) -> Tensor:
    """An IDX image file -> (n h w) uint8. Checks the magic number and that the payload has the promised size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            header = f.read(16)
            if len(header) < 16:
                raise CollagekitError(f"{str(path)!r} is too short to be an IDX image file")
            magic, n, h, w = struct.unpack(">IIII", header)
            if magic != IDX_UBYTE_3D:
                raise CollagekitError(f"{str(path)!r} is not an IDX image file (magic {magic:#010x}, want {IDX_UBYTE_3D:#010x})")
            if not (0 < n <= MAX_IMAGES and 0 < h <= 256 and 0 < w <= 256):
                raise CollagekitError(f"{str(path)!r} declares an implausible shape {n}x{h}x{w}")
            payload = f.read(n * h * w + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise CollagekitError(f"cannot read {str(path)!r}: {exc}") from None
    if len(payload) != n * h * w:
        raise CollagekitError(f"{str(path)!r} holds {len(payload)} pixel bytes, its header promises {n * h * w}")
    return torch.frombuffer(bytearray(payload), dtype=torch.uint8).reshape(n, h, w)


class Split(NamedTuple):
    """Three disjoint runs of consecutive images of one file, uint8 (n h w) each."""

    train: Tensor
    validation: Tensor
    test: Tensor


def split(folder: str | Path, train_count: int = TRAIN_COUNT, validation_count: int = VALIDATION_COUNT) -> Split:
    """The folder's images cut in order: the first ``train_count`` train, the next ``validation_count``
    validate, the rest test."""
    images = read_idx_images(images_path(folder))
    if images.shape[1:] != (28, 28):
        raise CollagekitError(f"the MNIST file in {str(folder)!r} holds {images.shape[1]}x{images.shape[2]} images, not 28x28")
    held_out = train_count + validation_count
    if not (train_count > 0 and validation_count > 0 and held_out < len(images)):
        raise CollagekitError(
            f"the MNIST file in {str(folder)!r} has {len(images)} images: too few to train on {train_count}, "
            f"validate on {validation_count} and test on the rest"
        )
    return Split(images[:train_count], images[train_count:held_out], images[held_out:])


def binarize(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """(n h w) uint8 -> (n 1 h w) float in {0, 1}: each pixel on with probability intensity / 255."""
    probs = images.float().div(255.0)[:, None]
    return torch.bernoulli(probs, generator=generator)


class BatchStream:
    """``make_batch(step, rank, world_size)`` for the shared training loop: a random batch of the
    training images, freshly binarised, drawn from a generator seeded by (seed, step, rank) so a
    resumed run replays the same data and every rank sees different images."""

    def __init__(self, images: Tensor, batch_size: int, seed: int) -> None:
        self.images = images
        self.batch_size = batch_size
        self.seed = seed

    def __call__(self, step: int, rank: int, world_size: int) -> Tensor:
        generator = torch.Generator().manual_seed(((self.seed * 1_000_003 + step) * 4096 + rank) % (2**63))
        index = torch.randint(len(self.images), (self.batch_size,), generator=generator)
        return binarize(self.images[index], generator)


def fixed_binarization(images: Tensor, seed: int = 0) -> Tensor:
    """The evaluation images binarised once with a fixed seed, so every model is scored on the same bits."""
    return binarize(images, torch.Generator().manual_seed(seed))
