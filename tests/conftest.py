"""Shared test helpers: the gpu marker, a CLI runner, and fake-but-real installed distributions."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m collagekit ARGS`` in a subprocess, as a user would; returns the finished process."""
    full_env = {k: v for k, v in os.environ.items() if k != "COLLAGEKIT_DEBUG"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "collagekit", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=600,
    )


def invoke(*args: str) -> SimpleNamespace:
    """Run the CLI's ``main`` in this process (fast: torch is already imported); same result shape as run_cli."""
    from collagekit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def make_distribution(root: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """Write an installed distribution into ``root`` (a sys.path entry): modules plus a .dist-info whose
    entry_points.txt declares ``entry_points`` in group ``collagekit``, exactly as pip would leave it.
    """
    root.mkdir(parents=True, exist_ok=True)
    for relative, source in modules.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[collagekit]\n{lines}")
    return root


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def fresh_registry(monkeypatch):
    """Build the registry anew for this test (and again afterwards, so later tests see a clean one)."""
    from collagekit.registry import get_registry

    yield lambda **kw: get_registry(refresh=True, **kw)
    monkeypatch.undo()
    get_registry(refresh=True)
