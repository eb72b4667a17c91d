"""``collagekit bench startup``: how long the commands that touch no tensor take, and that they import no torch.

``--help``, ``plugins``, ``list``, ``schema`` and ``validate`` read names, Configs and option
declarations only (every registration is lazy, :mod:`collagekit.lazy`); the target is at most 1 s each
on the project's 2-core machine. Each command runs as a user runs it, ``python -m collagekit ...`` in a
fresh process (warm file cache: one untimed run first), and the median of ``repeats`` runs is
reported beside ``python -c "import torch"``. One more run under ``python -X importtime`` says whether
torch was imported. A benchmark, not a test: timings depend on the machine, its load and whether
Python may cache bytecode (recorded).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

from pydantic import Field

from collagekit.bench import BenchContext, Benchmark, write_results
from collagekit.config import Options
from collagekit.lazy import Lazy

COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "plugins": ["plugins"],
    "list": ["list"],
    "list codec": ["list", "codec"],
    "schema": ["schema"],
    "validate": ["validate", "image_fractalize"],
    "recipes": ["recipes"],
}


class StartupOptions(Options):
    repeats: int = Field(5, ge=1, le=100, description="timed runs of each command (the median is reported)")
    target: float = Field(1.0, gt=0, description="seconds a command may take")


def _run(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    return time.perf_counter() - started, done


def _imports_torch(args: list[str], env: dict[str, str]) -> bool:
    done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, env=env, timeout=300)
    return any(line.rstrip().endswith("| torch") for line in done.stderr.splitlines())


def run(ctx: BenchContext) -> dict[str, Any]:
    repeats, target = ctx.option("repeats"), ctx.option("target")
    env = {k: v for k, v in os.environ.items() if k != "COLLAGEKIT_DEBUG"}
    load_start = os.getloadavg()[0]
    rows = []
    for label, command in {**{k: ["-m", "collagekit", *v] for k, v in COMMANDS.items()}, "import torch": ["-c", "import torch"]}.items():
        args = [sys.executable, *command]
        _, warm = _run(args, env)  # untimed: fills the file cache
        if warm.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {warm.stderr.strip()}")
        seconds = statistics.median(_run(args, env)[0] for _ in range(repeats))
        torch_loaded = label == "import torch" or _imports_torch(command, env)
        rows.append({"command": label, "seconds": round(seconds, 3), "imports_torch": torch_loaded})
        print(f"{label}: {seconds:.2f} s{' (imports torch)' if torch_loaded else ''}")
    light = [r for r in rows if r["command"] != "import torch"]
    summary = {
        "target_seconds": target,
        "slowest_command": max(light, key=lambda r: r["seconds"])["command"],
        "slowest_seconds": max(r["seconds"] for r in light),
        "all_within_target": all(r["seconds"] <= target and not r["imports_torch"] for r in light),
        "import_torch_seconds": rows[-1]["seconds"],
        "repeats": repeats,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_start": round(load_start, 2),
        "python": platform.python_version(),
        # Without cached bytecode every run compiles every imported module (pip compiles it on install;
        # PYTHONDONTWRITEBYTECODE=1 and a read-only site-packages prevent it), which doubles these times.
        "bytecode_cache": not sys.dont_write_bytecode,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    lines = [
        "# startup: commands that touch no tensor",
        "",
        f"`collagekit bench startup`: median of {repeats} runs of `python -m collagekit ...` each, fresh processes, warm file cache;",
        f"{summary['cpus']} CPUs ({summary['cpu']}), load average {summary['load_average_start']} at the start, Python {summary['python']}, "
        f"bytecode cache {'on' if summary['bytecode_cache'] else 'off (every run compiles every module)'}, {summary['date']}.",
        "",
        "| command | seconds | imports torch |",
        "|---|---|---|",
        *(f"| `{r['command']}` | {r['seconds']:.2f} | {'yes' if r['imports_torch'] else 'no'} |" for r in rows),
        "",
        f"Target: at most {target:g} s and no torch for every command: {'met' if summary['all_within_target'] else 'missed'}.",
        "",
    ]
    write_results(ctx, "startup", "\n".join(lines), {"summary": summary, "commands": rows})
    return summary


STARTUP_BENCH = Benchmark(
    name="startup",
    description="--help, plugins, list, schema, validate, recipes: seconds each and whether torch is imported (target <= 1 s)",
    run=Lazy("collagekit.startup:run"),
    options=StartupOptions,
)
