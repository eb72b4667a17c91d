"""Where tensors live: ``auto`` means CUDA when there is one, else the CPU."""

from __future__ import annotations

import torch

from collagekit.errors import CollagekitError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a usable :class:`torch.device`."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise CollagekitError(f"device {spec!r} was asked for but CUDA is not available here; use --device cpu or auto")
    try:
        return torch.device(spec)
    except RuntimeError as exc:
        raise CollagekitError(f"unknown device {spec!r}; use auto, cpu or cuda") from exc


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously): call before reading a timer."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for torch's operators (None: leave torch's choice). On a shared
    machine torch's default, one thread per core, can be many times slower than one thread."""
    if threads is not None:
        if threads < 1:
            raise CollagekitError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
