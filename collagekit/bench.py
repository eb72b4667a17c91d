"""Benchmarks: ``collagekit bench NAME``. Each is registered by the plugin whose code it measures.

A benchmark prints its figures and writes them (markdown and JSON) into ``--out`` (default
``./bench-results/``). Timings exclude warm-up; every results file ends with the conditions it was
measured under (:func:`conditions`: command, commit, CPU, threads, load, device, date; DESIGN section 4). Its data folder
is ``--data DIR``, else ``$COLLAGEKIT_DATA/<its default_data>``; nothing is guessed.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    # Taken when the context is made, before any work: the load average is the machine's at the start.
    conditions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.conditions:
            self.conditions = conditions(self.device)

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


def conditions(device: torch.device) -> dict[str, Any]:
    """What a measurement depends on: the command that ran, the code (commit), the CPU and torch's
    thread count, the machine's load (1-minute average; above the CPU count other jobs shared it, so
    wall-clock times are pessimistic), the device and the date."""
    import torch

    from collagekit import __version__

    return {
        "command": _command(),
        "commit": _commit(),
        "collagekit": __version__,
        "cpu": _cpu_name(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average_start": round(os.getloadavg()[0], 2),
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def _command() -> str:
    program = Path(sys.argv[0]).name
    if program in {"collagekit", "__main__.py"}:
        return "collagekit " + shlex.join(sys.argv[1:])
    return ("python " if program.endswith(".py") else "") + shlex.join(sys.argv)


def _commit() -> str:
    """The git commit the code runs from (``+changes`` when the tree differs from it), or a note that
    it is an installed package (a wheel has no commit; its version is recorded beside this)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return "not a git checkout"
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (git unavailable)"
    return head + ("+changes" if dirty else "")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_results(ctx: BenchContext, name: str, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    """``NAME.md`` and ``NAME.json`` in ``ctx.out``, each ending with the run's conditions."""
    return save_results(ctx.out, name, markdown, data, ctx.conditions)


def save_results(out: Path, name: str, markdown: str, data: dict[str, Any], measured_under: dict[str, Any]) -> tuple[Path, Path]:
    """What :func:`write_results` does, for measuring scripts outside ``collagekit bench``: the markdown
    gains a "Conditions" table and the JSON a ``conditions`` entry (``measured_under``: :func:`conditions`
    plus whatever else the run records, such as the load at its end)."""
    md, js = out / f"{name}.md", out / f"{name}.json"
    table = "\n".join(f"| {key} | {value} |" for key, value in measured_under.items())
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(md) as tmp:
        tmp.write_text(markdown.rstrip("\n") + f"\n\n## Conditions\n\n| | |\n|---|---|\n{table}\n")
    with atomic_output(js) as tmp:
        tmp.write_text(json.dumps({**data, "conditions": measured_under}, indent=2, sort_keys=True) + "\n")
    return md, js
