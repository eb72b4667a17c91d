"""Benchmarks: ``collagekit bench NAME``. Each is registered by the plugin whose code it measures.

A benchmark prints its figures and writes them (markdown and JSON) into ``--out`` (default
``./bench-results/``). Timings exclude warm-up and name the device (DESIGN section 4). Its data folder
is ``--data DIR``, else ``$COLLAGEKIT_DATA/<its default_data>``; nothing is guessed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collagekit.config import Options, parse_options
from collagekit.errors import CollagekitError
from collagekit.fileio import atomic_output

if TYPE_CHECKING:
    import torch

DATA_ENV = "COLLAGEKIT_DATA"  # the folder that holds kodak/, audio/, mnist/, ... (the project's shared/data)


@dataclass
class BenchContext:
    """What ``collagekit bench`` hands a benchmark: its data folder, where results go, the device, its
    declared options validated (``option(key)``), and every ``key=value`` from the command line,
    parsed (dotted keys split into paths), for benchmarks that pass settings through to a task."""

    data: Path | None  # None: the benchmark reads no data (its default_data is empty) and none was given
    out: Path
    device: torch.device
    overrides: list[tuple[list[str | int], Any]]
    options: Options

    def option(self, key: str) -> Any:
        """A declared option's value: given on the command line, else its declared default."""
        return getattr(self.options, key)


@dataclass(frozen=True)
class Benchmark:
    """``run`` may be a :class:`~collagekit.lazy.Lazy` stand-in, so that listing benchmarks imports
    nothing heavy. ``options`` declares the ``key=value`` options (``collagekit bench NAME --help``); a
    model that allows extra keys passes the others through (see its docstring)."""

    name: str
    description: str
    run: Callable[[BenchContext], dict[str, Any]]
    default_data: str = ""  # folder under the data root ($COLLAGEKIT_DATA)
    options: type[Options] = Options

    def parse(self, overrides: list[tuple[list[str | int], Any]]) -> Options:
        """The declared options from parsed ``key=value`` pairs; unknown keys are errors unless the
        options model passes them through (``extra="allow"``: the benchmark reads ``ctx.overrides``)."""
        passes = self.options.model_config.get("extra") == "allow"
        given = {}
        for path, value in overrides:
            key = ".".join(map(str, path))
            if key in self.options.model_fields or not passes:
                given[key] = value
        return parse_options(f"bench {self.name!r}", self.options, given)


def data_folder(given: str | Path | None, sub: str, what: str, option: str = "--data DIR") -> Path:
    """``given``, else ``$COLLAGEKIT_DATA/sub``: an existing folder, or a one-line error saying how to
    name one (``option``: how ``given`` is given, ``--data DIR`` or a recipe's ``data=DIR``)."""
    if given is not None:
        folder = Path(given)
    elif os.environ.get(DATA_ENV):
        folder = Path(os.environ[DATA_ENV]) / sub
    else:
        raise CollagekitError(f"{what} needs its data folder: pass {option}, or set {DATA_ENV} to the folder that holds {sub}/")
    if not folder.is_dir():
        raise CollagekitError(f"{what}: data folder {str(folder)!r} does not exist")
    return folder


def write_results(out: Path, name: str, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    md, js = out / f"{name}.md", out / f"{name}.json"
    with atomic_output(md) as tmp:
        tmp.write_text(markdown)
    with atomic_output(js) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return md, js
