"""Colour transforms shared by the image codecs (neural collage and PIFS): full-range BT.601 YCbCr, as in JPEG."""

from __future__ import annotations

import torch
from torch import Tensor

# Full-range BT.601 (JPEG's) RGB <-> YCbCr; chroma offset by 1/2 so every channel lies in [0, 1].
RGB_TO_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=torch.float64
)
YCBCR_TO_RGB = torch.linalg.inv(RGB_TO_YCBCR)
CHROMA_OFFSET = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    """(b 3 h w) RGB in [0, 1] -> YCbCr in [0, 1]."""
    m = RGB_TO_YCBCR.to(x)
    return torch.einsum("ij,bjhw->bihw", m, x) + CHROMA_OFFSET.to(x)[:, None, None]


def ycbcr_to_rgb(y: Tensor) -> Tensor:
    """(b 3 h w) YCbCr -> RGB (not clipped)."""
    m = YCBCR_TO_RGB.to(y)
    return torch.einsum("ij,bjhw->bihw", m, y - CHROMA_OFFSET.to(y)[:, None, None])
