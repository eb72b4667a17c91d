"""Image files through Pillow: (1 c h w) float tensors in [0, 1], c = 1 (grey) or 3 (RGB)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from collagekit.errors import CollagekitError
from collagekit.fileio import atomic_output
from collagekit.metrics import to_uint8
from collagekit_image.config import IMAGE, SUFFIXES

__all__ = ["IMAGE", "SUFFIXES", "image_from_memory", "image_to_memory", "load_image", "save_image"]

GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
WIDE_GREY_MODES = {"I", "I;16", "I;16B", "I;16L"}


def load_image(path: Path, max_elements: int) -> Tensor:
    """Grey images stay one channel; everything else becomes RGB (alpha is dropped)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            width, height = image.size
            channels = 1 if image.mode in GREY_MODES else 3
            if width * height * channels > max_elements:
                raise CollagekitError(
                    f"{path} has {width}x{height}x{channels} values, above the limit of {max_elements:,}"
                )
            peak = 65535.0 if image.mode in WIDE_GREY_MODES else 255.0
            if image.mode in ("I", "F"):
                image.load()
                _check_range(path, image.mode, np.asarray(image), peak)
            if peak == 255.0:
                image = image.convert("L" if channels == 1 else "RGB")
            image.load()
    except CollagekitError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CollagekitError(f"{path} is not an image that Pillow can read safely") from None
    except OSError as exc:
        raise CollagekitError(f"{path} could not be read as an image: {exc}") from None
    # 16-bit grey keeps its full range (Pillow's own conversion to "L" would clip it at 255). In place:
    # one float32 copy of a large image, not three.
    array = np.array(image, dtype=np.float32)
    array /= peak
    return _from_array(array)


def _from_array(array: np.ndarray) -> Tensor:
    """(h w) or (h w c) float32, a copy the caller gives away -> (1 c h w) in [0, 1] (clipped in place)."""
    np.clip(array, 0.0, 1.0, out=array)
    tensor = torch.from_numpy(array)
    tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    return tensor[None].contiguous()


def image_from_memory(data: Any, attrs: dict[str, Any]) -> Tensor:
    """An image in memory -> (1 c h w) in [0, 1], c = 1 or 3, in the layout each library uses: a PIL
    image; a numpy array (h w) or (h w c) as Pillow/imageio give it (uint8 in [0, 255], floats in
    [0, 1]); a torch tensor (c h w) or (1 c h w) in [0, 1] as torchvision gives it."""
    if attrs:
        raise CollagekitError(f"images take no attributes, got {', '.join(attrs)}")
    if isinstance(data, Image.Image):
        mode = "L" if data.mode in GREY_MODES - WIDE_GREY_MODES else "RGB"
        return _from_array(np.asarray(data.convert(mode), dtype=np.float32) / np.float32(255.0))
    if isinstance(data, np.ndarray):
        if data.ndim == 3 and data.shape[2] == 4:
            data = data[..., :3]  # alpha is dropped, as for files
        if not (data.ndim == 2 or (data.ndim == 3 and data.shape[2] in (1, 3))):
            raise CollagekitError(f"an image array must be (h w) or (h w c) with c = 1 or 3, got shape {data.shape}")
        if data.dtype == np.uint8:
            return _from_array(data.astype(np.float32) / np.float32(255.0))
        if not np.issubdtype(data.dtype, np.floating):
            raise CollagekitError(f"an image array must be uint8 (0..255) or floats in [0, 1], got {data.dtype}")
        return _from_array(data.astype(np.float32))
    if isinstance(data, Tensor):
        x = data.detach().float().cpu()
        x = x[None] if x.ndim == 3 else x
        if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
            raise CollagekitError(f"an image tensor must be (c h w) or (1 c h w) with c = 1 or 3, got shape {tuple(data.shape)}")
        return x.clamp(0.0, 1.0).contiguous()
    raise CollagekitError(f"cannot read an image from a {type(data).__name__}; give a path, a PIL image, a numpy array or a tensor")


def image_to_memory(z: Tensor) -> Tensor:
    """(1 c h w) -> (c h w) in [0, 1], torchvision's layout."""
    return z[0]
def _check_range(path: Path, mode: str, raw: np.ndarray, peak: float) -> None:
    """32-bit integer and float pixels can hold anything: refuse values outside [0, peak] (or not finite)
    instead of clipping them into a flat image."""
    if raw.size == 0:
        return
    if not np.isfinite(raw).all():
        raise CollagekitError(f"{path} holds NaN or infinite pixel values")
    lo, hi = raw.min(), raw.max()
    if lo < 0 or hi > peak:
        kind = "32-bit integer" if mode == "I" else "floating-point"
        raise CollagekitError(
            f"{path} is a {kind} image with values from {lo:g} to {hi:g}; collagekit reads values 0 to {peak:g} "
            f"({'16-bit' if mode == 'I' else '8-bit'} levels): rescale it, e.g. to a 16-bit PNG"
        )


def save_image(z: Tensor, path: Path) -> None:
    """(1 c h w) in [0, 1] -> an 8-bit file whose format follows the suffix."""
    array = to_uint8(z[0])
    array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    with atomic_output(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp)



def codec_input_size(x: Tensor, codec: str, max_pixels: int) -> tuple[int, int]:
    """An image codec's input (1 c h w), c = 1 or 3, checked -> (h, w); one line naming the codec otherwise."""
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
        raise CollagekitError(f"{codec} compresses grey or RGB images (1 c h w, c = 1 or 3), got shape {tuple(x.shape)}")
    h, w = int(x.shape[2]), int(x.shape[3])
    if h * w > max_pixels:
        raise CollagekitError(f"the image has {h * w:,} pixels, above the limit of {max_pixels:,} (codec option max_pixels)")
    return h, w
