"""Sampling at any resolution, sample grids, and the magnification figure (collage decode vs bicubic).

Samples are the mean of p(x | w) (pixel probabilities) for codes w drawn from the prior. A collage
code decodes at ``scale`` x the training resolution through the core operator; the conv baseline
decodes at 1x only, so its magnified samples are bicubic upsamplings.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from collagekit import budget
from collagekit.budget import CollageGeometry, collage_decode_bytes
from collagekit.errors import CollagekitError
from collagekit.fileio import atomic_output
from collagekit.metrics import to_uint8
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit_vae.model import IMAGE_SIZE, CollageLikelihood, HierarchicalVAE

CHUNK_VALUES = 1 << 22  # decode in chunks of at most this many output values (bounds solver memory)
MAX_SAMPLES = 4096


def decode_chunked(model: HierarchicalVAE, w: Tensor, scale: int) -> Tensor:
    """Codes (n p gh gw) -> probabilities (n 1 28s 28s) on the CPU, a few images at a time."""
    per_image = math.prod(s * scale for s in IMAGE_SIZE)
    step = max(1, CHUNK_VALUES // per_image)
    return torch.cat([model.decode(chunk, scale).cpu() for chunk in w.split(step)])


# Peak bytes per output value of sampling besides the decode: the float32 samples, their float64
# copies on the way to 8 bits, the 8-bit tiles and the grid's canvas.
OUTPUT_BYTES_PER_VALUE = 4 + 16 + 2


def check_budget(n: int, scale: int, max_elements: int = DEFAULT_MAX_ELEMENTS) -> None:
    if not 1 <= n <= MAX_SAMPLES:
        raise CollagekitError(f"--n must lie in 1..{MAX_SAMPLES}, got {n}")
    values = n * math.prod(s * scale for s in IMAGE_SIZE)
    if values > max_elements:
        raise CollagekitError(
            f"{n} samples at scale {scale} are {values:,} pixels, above the limit of {max_elements:,}; use fewer or a smaller scale"
        )


def sample_bytes(model: HierarchicalVAE, n: int, scale: int) -> int:
    """Peak working memory of :func:`sample`: the samples on their way to 8 bits, and one chunk's decode
    (a collage decoder's solve, from its geometry and solver; the conv baseline's is small)."""
    per_image = math.prod(s * scale for s in IMAGE_SIZE)
    need = OUTPUT_BYTES_PER_VALUE * n * per_image
    if isinstance(model.likelihood, CollageLikelihood):
        likelihood = model.likelihood
        geometry = CollageGeometry.of_collage(likelihood.collage, IMAGE_SIZE)
        chunk = min(n, max(1, CHUNK_VALUES // per_image))
        need += collage_decode_bytes(geometry, chunk, scale, likelihood.solver.options(), output=0)
    return need


def sample(model: HierarchicalVAE, n: int, scale: int = 1, seed: int = 0) -> Tensor:
    """n samples (n 1 28s 28s) in [0, 1], decoded at ``scale``; the same seed gives the same codes at every scale."""
    check_budget(n, scale)
    budget.check(sample_bytes(model, n, scale), f"drawing {n} samples at scale {scale}", "draw fewer or use a smaller scale")
    w = model.sample_latent(n, torch.Generator().manual_seed(seed))
    return decode_chunked(model, w, scale)


def grid(images: Tensor, pad: int = 2) -> np.ndarray:
    """(n 1 h w) in [0, 1] -> one uint8 (H W) picture, ceil(sqrt(n)) columns, white gutters."""
    n, _, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 255, dtype=np.uint8)
    tiles = to_uint8(images[:, 0])
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        canvas[top : top + h, left : left + w] = tiles[i]
    return canvas


def save_png(array: np.ndarray, path: str | Path) -> None:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise CollagekitError(f"output {str(path)!r} must end in .png")
    with atomic_output(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", optimize=True)


def bicubic(images: Tensor, scale: int) -> Tensor:
    """(n 1 h w) -> (n 1 hs ws) by bicubic interpolation, clipped to [0, 1] (bicubic overshoots)."""
    return torch.nn.functional.interpolate(images, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


def _crop(image: Tensor, centre: tuple[float, float], size: int) -> Tensor:
    """A size x size window of (1 H W) around ``centre`` (fractions of H and W), kept inside the image."""
    _, height, width = image.shape
    top = min(max(int(centre[0] * height) - size // 2, 0), height - size)
    left = min(max(int(centre[1] * width) - size // 2, 0), width - size)
    return image[:, top : top + size, left : left + size]


def _centre_of_mass(image: Tensor) -> tuple[float, float]:
    """(1 h w) -> centre of the ink, as fractions of the height and width (where the detail is)."""
    weights = image[0].double() + 1e-9
    ys = torch.arange(image.shape[1], dtype=torch.float64)[:, None] + 0.5
    xs = torch.arange(image.shape[2], dtype=torch.float64)[None, :] + 0.5
    total = weights.sum()
    return float((weights * ys).sum() / total / image.shape[1]), float((weights * xs).sum() / total / image.shape[2])


def magnification_figure(model: HierarchicalVAE, path: str | Path, *, n: int = 4, seed: int = 0, big: int = 40) -> None:
    """One row per sample: the 1x sample, bicubic 4x and collage 4x, then a window of bicubic big-x and
    collage big-x around the digit's centre. Every panel is ``tile`` pixels square; 1x and 4x panels
    are shown with nearest-neighbour enlargement so their pixels stay visible."""
    tile = 12 * IMAGE_SIZE[0]  # 336: 1x enlarged 12x, 4x enlarged 3x, and a 336-pixel window of the big decode
    w = model.sample_latent(n, torch.Generator().manual_seed(seed))
    ones = decode_chunked(model, w, 1)
    fours = decode_chunked(model, w, 4)
    bigs = decode_chunked(model, w, big)
    columns = ["1x sample", "bicubic 4x", "collage 4x", f"bicubic {big}x (window)", f"collage {big}x (window)"]
    header, pad = 24, 4
    canvas = Image.new("L", (len(columns) * (tile + pad) + pad, header + n * (tile + pad) + pad), 255)
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(columns):
        draw.text((pad + c * (tile + pad) + 4, 6), title, fill=0)
    for r in range(n):
        centre = _centre_of_mass(ones[r])
        panels = [
            ones[r],
            bicubic(ones[r : r + 1], 4)[0],
            fours[r],
            _crop(bicubic(ones[r : r + 1], big)[0], centre, tile),
            _crop(bigs[r], centre, tile),
        ]
        for c, panel in enumerate(panels):
            picture = Image.fromarray(to_uint8(panel[0])).resize((tile, tile), Image.NEAREST)
            canvas.paste(picture, (pad + c * (tile + pad), header + pad + r * (tile + pad)))
    with atomic_output(path) as tmp:
        canvas.save(tmp, format="PNG", optimize=True)
