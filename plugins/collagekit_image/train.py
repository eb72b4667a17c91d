"""``task: image_train``: train a Neural Collage image codec on random crops of natural photos.

Objective (rate-distortion, CompressAI's convention): ``loss = lmbda * 255^2 * MSE + bpp``, where MSE
is measured on the decoded RGB crop (luma decoded at scale 1, chroma at scale 2: exactly what the
codec does) and bpp is the learned prior's estimate of the quantised latents' bits per pixel. The
distortion sees straight-through rounded latents, the rate term noisy ones (``quantiser: ste``), or
both see noise (``quantiser: noise``). ``lmbda`` is the one knob that trades rate for distortion.

Runs single-process or under ``torchrun`` through :func:`collagekit.training.train`.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np
import torch
from torch import Tensor, nn

from collagekit.codec_training import CodecTrainTask, TrainingSetup
from collagekit.errors import CollagekitError
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.prior import quantise
from collagekit_image.config import ImageTrainConfig
from collagekit_image.imageio import load_image
from collagekit_image.neural import Layout, NeuralCollageModel, pad_unit
from collagekit_image.pretrained import STORE
from collagekit_image.validation import validation_names

MAX_TRAIN_IMAGES = 10_000


class RateDistortion(nn.Module):
    """``forward(crops (b 3 S S) in [0, 1]) -> (loss, metrics)``; owns the model being trained."""

    def __init__(self, model: NeuralCollageModel, lmbda: float, quantiser: str, tol: float, max_iter: int) -> None:
        super().__init__()
        self.model = model
        self.lmbda = lmbda
        self.quantiser = quantiser
        self.tol = tol
        self.max_iter = max_iter

    def forward(self, crops: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        model = self.model
        crops = crops.to(next(model.parameters()).device)
        b, _, h, w = crops.shape
        layout = Layout.of((h, w), model.cfg)
        if layout.padded != (h, w):
            raise CollagekitError(f"training crops must be multiples of {pad_unit(model.cfg)} pixels, got {h}x{w}")
        luma, chroma = model.planes(crops)
        bits = crops.new_zeros(())
        decoded = []
        for plane, tiles, scale in ((model.luma, luma, 1), (model.chroma, chroma, 2)):
            y = plane.latents(tiles)
            bits = bits + plane.prior.bits(quantise(y, "noise")).sum()
            q = quantise(y, "ste" if self.quantiser == "ste" else "noise")
            decoded.append(plane.decode(q, scale, tol=self.tol, max_iter=self.max_iter, gradient="implicit"))
        out = model.assemble(decoded[0], decoded[1], b, layout, 1)
        mse = torch.mean((out - crops) ** 2)
        bpp = bits / (b * h * w)
        loss = self.lmbda * 255.0**2 * mse + bpp
        return loss, {"bpp": bpp.detach(), "psnr": -10.0 * torch.log10(mse.detach().clamp(min=1e-10))}


def training_images(folder: Path, exclude: frozenset[str]) -> tuple[list[Path], int]:
    """The image files of a training folder, those named in ``exclude`` (the validation split) left out
    -> (paths in name order, how many were left out); Kodak, the evaluation set, is refused."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".webp", ".bmp", ".tif", ".tiff"))
    if "kodak" in str(folder).lower() or any(p.name.startswith("kodim") for p in paths):
        raise CollagekitError(f"{folder} holds Kodak images: they are the evaluation set, never train on them")
    return [p for p in paths if p.name not in exclude], sum(p.name in exclude for p in paths)


def training_rgb(path: Path) -> Tensor:
    """A training image as (1 3 h w) RGB in [0, 1], read like any input (one-line errors for unreadable
    files; grey repeated to three channels)."""
    x = load_image(path, DEFAULT_MAX_ELEMENTS)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class CropStream:
    """Random ``crop x crop`` RGB crops of a folder of images, with the 8 flips/rotations.

    Files named in ``exclude`` (the validation split) are skipped; ``held_out`` counts them.
    ``__call__(step, rank, world_size)`` is deterministic in its arguments (the shared training
    loop's contract): resuming replays the same crops and every rank draws different ones.
    """

    def __init__(self, folder: Path, crop: int, batch: int, seed: int, exclude: frozenset[str] = frozenset()) -> None:
        from PIL import Image

        paths, self.held_out = training_images(folder, exclude)
        paths = paths[:MAX_TRAIN_IMAGES]
        self.images: list[Tensor] = []
        for path in paths:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
            if min(array.shape[:2]) >= crop:
                self.images.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
        if not self.images:
            raise CollagekitError(f"no training image of at least {crop}x{crop} pixels in {folder}")
        self.crop, self.batch, self.seed = crop, batch, seed

    def __call__(self, step: int, rank: int, world_size: int) -> Tensor:
        g = torch.Generator().manual_seed(((self.seed * 1_000_003 + step) * 1024 + rank) % (1 << 63))
        crops = []
        for _ in range(self.batch):
            image = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
            _, h, w = image.shape
            top = int(torch.randint(h - self.crop + 1, (1,), generator=g))
            left = int(torch.randint(w - self.crop + 1, (1,), generator=g))
            crop = image[:, top : top + self.crop, left : left + self.crop]
            turn = int(torch.randint(8, (1,), generator=g))
            crop = torch.rot90(crop.flip(-1) if turn >= 4 else crop, turn % 4, dims=(1, 2))
            crops.append(crop)
        return torch.stack(crops).float() / 255.0


class ImageTrain(CodecTrainTask):
    store = STORE

    Config = ImageTrainConfig

    config: Config

    data_folder = "train_images"

    def build(self, folder: Path) -> TrainingSetup:
        cfg = self.config
        model = NeuralCollageModel(cfg.model)
        exclude = frozenset(validation_names()) if cfg.hold_out_validation else frozenset()
        stream = CropStream(folder, cfg.crop, cfg.training.batch_size, cfg.training.seed, exclude)
        objective = RateDistortion(model, cfg.lmbda, cfg.quantiser, cfg.tol, cfg.max_iter)
        return TrainingSetup(model, objective, stream, {"crop": cfg.crop, "images": len(stream.images), "held_out": stream.held_out})
