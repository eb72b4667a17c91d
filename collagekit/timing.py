"""Timing for benchmarks and the compress tasks: medians of repeated runs, device work included."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

from collagekit.device import synchronize

T = TypeVar("T")


@dataclass(frozen=True)
class Timed(Generic[T]):
    """Median wall-clock and process-CPU seconds of some calls, and the last call's result."""

    seconds: float
    cpu_seconds: float
    result: T


def median_time(fn: Callable[[], T], repeats: int, device: torch.device | None = None) -> Timed[T]:
    """Call ``fn`` ``repeats`` times (warm-up is the caller's: first calls pay one-time costs) and time
    each call, waiting for ``device``'s queued work before reading the clock (CUDA runs asynchronously)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    wall, cpu = [], []
    result: T
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        if device is not None:
            synchronize(device)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return Timed(statistics.median(wall), statistics.median(cpu), result)
