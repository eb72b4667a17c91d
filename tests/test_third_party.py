"""A third-party partitioner package, installed for real and used through the CLI.

``tests/fixtures/collagekit-stripes`` is a complete plugin package as a researcher would write it (and
the worked example of docs/plugins.md). It is installed with pip into a temporary folder, and the CLI
runs in subprocesses with that folder on PYTHONPATH, so collagekit discovers the plugin the only way it
ever does: through its entry point in group ``collagekit`` (no ``pm.register`` anywhere).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, REPO, run_cli

from collagekit.container import read_container

FIXTURE = REPO / "tests" / "fixtures" / "collagekit-stripes"
RECIPE = FIXTURE / "stripes_fractalize.yaml"
IMAGE = DATA / "kodim05_64.png"
FAST = ["encoder.collage_steps=10", "encoder.steps=3"]  # a quick fit: the test checks plumbing, not quality


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The fixture package pip-installed (built from a copy, so no build/ lands in the repository)."""
    root = tmp_path_factory.mktemp("third_party")
    source = root / "collagekit-stripes"
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-compile", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(
            "pip could not build the fixture package (a setuptools with bdist_wheel is needed: setuptools>=70.1, "
            f"or setuptools plus wheel):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    assert (target / "collagekit_stripes" / "plugin.py").is_file()
    return target


@pytest.fixture(autouse=True)
def _plain_plugin_env(monkeypatch):
    """The subprocesses inherit os.environ: clear the plugin switches a developer may have set."""
    for name in ("COLLAGEKIT_LOAD_PLUGINS", "COLLAGEKIT_STRICT_PLUGINS"):
        monkeypatch.delenv(name, raising=False)


def cli(site: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return run_cli(*args, env={"PYTHONPATH": path, "COLUMNS": "200", **env}, cwd=cwd)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "warning:" not in done.stderr, done.stderr  # the plugin loaded cleanly
    return done.stdout


def row(table: str, first_cell: str) -> str:
    """The line of a rich table whose first cell is ``first_cell``."""
    found = [line for line in table.splitlines() if line.strip("│┃ ").startswith(first_cell + " ")]
    assert found, f"no row {first_cell!r} in:\n{table}"
    return found[0]


def test_plugins_lists_the_installed_distribution(site, tmp_path):
    line = row(ok(cli(site, "plugins", cwd=tmp_path)), "stripes")
    assert "collagekit-stripes" in line and "0.1.0" in line
    assert "register_partitioners" in line and "ok" in line


def test_list_shows_the_partitioner_and_its_plugin(site, tmp_path):
    out = ok(cli(site, "list", "partitioner", cwd=tmp_path, COLLAGEKIT_STRICT_PLUGINS="1"))
    cells = [c.strip() for c in row(out, "partitioner │ stripes").split("│") if c.strip()]
    assert cells[:3] == ["partitioner", "stripes", "stripes"]  # kind, name, owning plugin
    assert "rows: int = 4" in cells[3] and "cols: int = 8" in cells[3]
    assert "tiles2d" in out  # the first-party partitioner is still there


def test_recipe_runs_and_its_code_decodes_at_twice_the_size(site, tmp_path):
    from PIL import Image

    out = tmp_path / "out.png"
    metrics = tmp_path / "metrics.json"
    ok(cli(site, "run", str(RECIPE), f"input={IMAGE}", f"output={out}", f"metrics={metrics}", "scale=1", *FAST, cwd=tmp_path))
    code = out.with_suffix(".clg")
    assert code.is_file() and code.stat().st_size > 0
    assert Image.open(out).size == (64, 64)
    result = json.loads(metrics.read_text())
    assert result["psnr_db"] > 15 and result["lipschitz_bound"] < 0.95

    header = read_container(code).header  # reading needs no plugin; decoding does
    assert header["collage"]["partitioner"] == {"name": "stripes", "rows": 4, "cols": 8, "levels": 1}
    assert header["created_by"]["stripes"] == "0.1.0"

    big = tmp_path / "big.png"
    ok(cli(site, "decompress", str(code), "-o", str(big), "--scale", "2", cwd=tmp_path))
    assert Image.open(big).size == (128, 128)

    # The code records which distribution provides its partitioner; without it, the error says what to install.
    assert header["providers"]["partitioner:stripes"] == {"plugin": "stripes", "distribution": "collagekit-stripes", "version": "0.1.0"}
    missing = cli(site, "decompress", str(code), "-o", str(tmp_path / "m.png"), cwd=tmp_path, COLLAGEKIT_LOAD_PLUGINS="image")
    assert missing.returncode == 1 and not (tmp_path / "m.png").exists()
    [line] = missing.stderr.splitlines()
    assert line.startswith("error: this file needs the partitioner 'stripes'") and "collagekit-stripes 0.1.0" in line
    assert "pip install collagekit-stripes" in line


def test_adaptive_recipe_codes_a_sparse_tree_that_decodes_at_twice_the_size(site, tmp_path):
    from PIL import Image

    out = tmp_path / "adaptive.png"
    metrics = tmp_path / "metrics.json"
    recipe = FIXTURE / "stripes_fractalize_adaptive.yaml"
    ok(cli(site, "run", str(recipe), f"input={IMAGE}", f"output={out}", f"metrics={metrics}", "encoder.ranges=60", cwd=tmp_path))
    assert Image.open(out).size == (128, 128)
    header = read_container(out.with_suffix(".clg")).header
    assert header["collage"]["mixing"] == "sparse" and header["collage"]["partitioner"]["levels"] == 3
    assert json.loads(metrics.read_text())["psnr_db"] > 15
    big = tmp_path / "big.png"
    ok(cli(site, "decompress", str(out.with_suffix(".clg")), "-o", str(big), "--scale", "3", cwd=tmp_path))
    assert Image.open(big).size == (192, 192)


def test_fractalize_with_the_third_party_partitioner(site, tmp_path):
    from PIL import Image

    out = tmp_path / "fractal.png"
    # Square blocks, so the image task's default dihedral cells still apply.
    stripes = "collage.partitioner={name: stripes, rows: 8, cols: 8}"
    ok(cli(site, "fractalize", str(IMAGE), "-o", str(out), "--scale", "2", stripes, *FAST, cwd=tmp_path))
    assert Image.open(out).size == (128, 128)
    header = read_container(out.with_suffix(".clg")).header
    assert header["collage"]["partitioner"] == {"name": "stripes", "rows": 8, "cols": 8, "levels": 1}


def test_fractalize_switching_the_partitioner_by_name(site, tmp_path):
    out = tmp_path / "fractal.png"
    args = ["collage.partitioner.name=stripes", "collage.auxiliary=[]", *FAST]
    ok(cli(site, "fractalize", str(IMAGE), "-o", str(out), *args, cwd=tmp_path))
    assert out.is_file()


def test_packages_own_tests_pass_against_the_installed_package(site, tmp_path):
    """The unit tests docs/plugins.md shows (ranges/merge round trip, strict-mode load) pass for real."""
    tests = site.parent / "collagekit-stripes" / "tests"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:dash", str(tests)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


@pytest.fixture(scope="module")
def deselected(site, tmp_path_factory) -> subprocess.CompletedProcess:
    """The fixture recipe, run with only the image plugin selected: stripes is installed but not loaded."""
    tmp = tmp_path_factory.mktemp("deselected")
    done = cli(site, "run", str(RECIPE), f"input={IMAGE}", f"output={tmp / 'x.png'}", cwd=tmp, COLLAGEKIT_LOAD_PLUGINS="image")
    assert not (tmp / "x.png").exists()
    return done


def test_deselected_plugin_is_an_unknown_partitioner(deselected):
    assert deselected.returncode == 1, deselected.stdout + deselected.stderr
    assert "Traceback" not in deselected.stderr
    first = deselected.stderr.splitlines()[0]
    assert first.startswith("error: ") and "unknown partitioner 'stripes'" in first and "tiles2d" in first
    assert "stripes_fractalize.yaml:" in first  # names the recipe line


def test_deselected_plugin_error_is_one_line(deselected):
    assert len(deselected.stderr.splitlines()) == 1, deselected.stderr


def test_deselected_plugin_fractalize_error_is_one_line(site, tmp_path):
    done = cli(
        site, "fractalize", str(IMAGE), "-o", str(tmp_path / "x.png"), "collage.partitioner.name=stripes",
        cwd=tmp_path, COLLAGEKIT_LOAD_PLUGINS="image",
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ") and "unknown partitioner 'stripes'" in line and "tiles2d" in line


def test_docs_show_the_fixture_word_for_word():
    """docs/plugins.md's worked example is this fixture: its marked code blocks are the files themselves."""
    doc = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- fixture: (\S+) -->\n```\w*\n(.*?)\n```\n", doc, flags=re.S)
    shown = {name: text for name, text in blocks}
    assert set(shown) == {
        "pyproject.toml",
        "src/collagekit_stripes/plugin.py",
        "src/collagekit_stripes/partitioner.py",
        "stripes_fractalize.yaml",
        "stripes_fractalize_adaptive.yaml",
        "tests/test_stripes.py",
    }
    for name, text in shown.items():
        assert text == (FIXTURE / name).read_text(encoding="utf-8").rstrip("\n"), f"docs/plugins.md is out of date for {name}"
