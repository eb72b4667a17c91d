"""Benchmarks: ``collagekit bench NAME``. Each is registered by the plugin whose code it measures.

A benchmark prints its figures and writes them (markdown and JSON) under ``docs/results/`` by
default. Timings exclude warm-up and name the device (DESIGN section 4).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from collagekit.fileio import atomic_output

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@dataclass
class BenchContext:
    """What ``collagekit bench`` hands a benchmark: its data folder, where results go, the device, and
    the ``key=value`` options from the command line, parsed (dotted keys split into paths)."""

    data: Path
    out: Path
    device: torch.device
    overrides: list[tuple[list[str | int], Any]]

    def option(self, key: str, default: Any) -> Any:
        """A top-level option such as ``limit=4`` (benchmark-specific), else ``default``."""
        for path, value in self.overrides:
            if path == [key]:
                return value
        return default


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    run: Callable[[BenchContext], dict[str, Any]]
    default_data: str = ""  # folder under ../shared/data


def write_results(out: Path, name: str, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    md, js = out / f"{name}.md", out / f"{name}.json"
    with atomic_output(md) as tmp:
        tmp.write_text(markdown)
    with atomic_output(js) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return md, js


def default_data_root() -> Path:
    """``../shared/data`` beside the source checkout (benchmarks take --data to point elsewhere)."""
    return SHARED_DATA.resolve()
