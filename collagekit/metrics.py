"""Honest metrics (DESIGN section 4): PSNR on the stored 8-bit result, PSNR and SNR of float signals
(waveforms), bits from file bytes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from collagekit.fileio import atomic_output


def to_uint8(x: Tensor) -> np.ndarray:
    """Values in [0, 1] -> what gets stored: scaled to [0, 255], clipped, rounded, uint8."""
    return (x.detach().double().cpu() * 255.0).clamp(0, 255).round().to(torch.uint8).numpy()


def psnr_uint8(reference: np.ndarray, decoded: np.ndarray, peak: float = 255.0) -> float:
    """PSNR of two uint8 arrays: MSE in float64 over every element, never uint8 differences."""
    if reference.shape != decoded.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {decoded.shape}")
    mse = np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def psnr(reference: Tensor, decoded: Tensor) -> float:
    """PSNR in dB of two signals in [0, 1], each quantised to 8 bits first as a saved file would be."""
    return psnr_uint8(to_uint8(reference), to_uint8(decoded))


def _float64(x: Tensor | np.ndarray) -> np.ndarray:
    return (x.detach().double().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64))


def psnr_float(reference: Tensor | np.ndarray, decoded: Tensor | np.ndarray, peak: float) -> float:
    """PSNR in dB of float signals (e.g. waveforms read back from the stored 16-bit file), MSE in float64.

    Waveforms in [-1, 1] use ``peak=2`` (the full range), i.e. 20 log10(2 / rmse): the same as mapping
    them to [0, 1] first and using peak 1, the convention COIN++ reports for audio.
    """
    a, b = _float64(reference), _float64(decoded)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def snr(reference: Tensor | np.ndarray, decoded: Tensor | np.ndarray) -> float:
    """Signal-to-noise ratio in dB: 10 log10(sum reference^2 / sum (reference - decoded)^2), float64."""
    a, b = _float64(reference), _float64(decoded)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    noise = float(np.sum((a - b) ** 2))
    return math.inf if noise == 0 else 10.0 * math.log10(float(np.sum(a**2)) / noise)


def bits_per_element(file_bytes: int, elements: int) -> float:
    """File bytes x 8 / elements (pixels for images, never sub-pixels)."""
    return file_bytes * 8.0 / elements


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def at_rate(points: list[tuple[float, float]], target: float) -> float | None:
    """Quality at rate ``target`` from (rate, quality) points, interpolated linearly in log-rate (as BD-rate
    does); None when the points do not bracket the target (never extrapolated)."""
    pts = sorted(points)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1 and r1 > r0:
            w = (math.log(target) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return q0 + w * (q1 - q0)
    return None
