"""The command line: listing, validating, running recipes, and one-line errors for user mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import DATA, REPO, invoke, run_cli

RECIPE = REPO / "collagekit" / "recipes" / "image_fractalize.yaml"
FAST = ["encoder.collage_steps=10", "encoder.steps=10"]


def test_plugins_lists_first_party_plugins() -> None:
    result = invoke("plugins")
    assert result.returncode == 0
    for name in ("core", "image", "register_partitioners", "ok"):
        assert name in result.stdout


def test_list_shows_components_owner_and_fields() -> None:
    result = invoke("list", "partitioner")
    assert result.returncode == 0
    assert "tiles2d" in result.stdout and "image" in result.stdout and "range_size" in result.stdout
    bad = invoke("list", "partitioners")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: unknown kind 'partitioners'") and "did you mean 'partitioner'" in bad.stderr


def test_schema_is_json() -> None:
    result = invoke("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "image_fractalize" in json.dumps(schema)


def test_validate_ok_and_bad(tmp_path: Path) -> None:
    assert invoke("validate", str(RECIPE)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(RECIPE.read_text().replace("name: dihedral", "name: dihedrall"))
    result = invoke("validate", str(bad))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {bad}:") and "unknown auxiliary 'dihedrall'" in lines[0]


def test_run_recipe_writes_outputs(tmp_path: Path) -> None:
    outputs = [f"output={tmp_path / 'f.png'}", f"code={tmp_path / 'f.clg'}", f"metrics={tmp_path / 'm.json'}"]
    result = invoke("run", str(RECIPE), f"input={DATA / 'kodim05_64.png'}", "scale=2", *outputs, *FAST, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "f.png").size == (128, 128)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["device"] == "cpu" and metrics["scale"] == 2
    assert "psnr_db" in result.stdout


def test_run_prints_its_result_once_under_torchrun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every torchrun process runs the recipe; only rank 0 prints the metrics."""
    monkeypatch.setenv("RANK", "1")
    outputs = [f"output={tmp_path / 'f.png'}", f"code={tmp_path / 'f.clg'}", "metrics=null"]
    result = invoke("run", str(RECIPE), f"input={DATA / 'kodim05_64.png'}", "scale=1", *outputs, *FAST, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "psnr_db" not in result.stdout


def test_run_default_recipe_uses_the_shipped_sample(tmp_path: Path) -> None:
    """The recipe as shipped (no input) fractalizes the sample image inside the package."""
    result = invoke("run", str(RECIPE), f"output={tmp_path / 'f.png'}", f"code={tmp_path / 'f.clg'}", "metrics=null", "scale=1", *FAST)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "f.png").size == (256, 256)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_cuda_without_cuda_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke("run", str(RECIPE), f"output={tmp_path / 'f.png'}", "--device", "cuda")
    assert result.returncode == 1
    assert "CUDA is not available" in result.stderr
    assert not (tmp_path / "f.png").exists()


def test_user_errors_have_no_traceback_unless_debugging(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    plain = run_cli("run", str(missing))
    assert plain.returncode == 1
    assert plain.stderr == f"error: recipe '{missing}' does not exist\n"
    debug = run_cli("run", str(missing), env={"COLLAGEKIT_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.returncode == 0
    for command in ("run", "validate", "fractalize", "decompress", "bench", "plugins", "list", "schema"):
        assert command in result.stdout


def test_unknown_benchmark_suggests() -> None:
    result = invoke("bench", "image-fi")
    assert result.returncode == 1
    assert "unknown bench 'image-fi'" in result.stderr and "did you mean 'image-fit'" in result.stderr


def test_task_fields_pass_through_as_options(tmp_path: Path) -> None:
    """`--encoder.steps 3` is the same override as `encoder.steps=3` (how plugins get --maps, --points...)."""
    result = invoke(
        "fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "o.png"),
        "--encoder.collage-steps", "2", "--encoder.steps=3", f"--metrics={tmp_path / 'm.json'}",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.json").is_file()
    dangling = invoke("fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "o.png"), "--encoder.steps")
    assert dangling.returncode == 1 and dangling.stderr == "error: option --encoder.steps needs a value\n"


def test_codec_options_are_checked(tmp_path: Path) -> None:
    made = invoke("fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "o.png"), *FAST)
    assert made.returncode == 0, made.stderr
    result = invoke("decompress", str(tmp_path / "o.clg"), "-o", str(tmp_path / "d.png"), "--points", "5")
    assert result.returncode == 1
    assert result.stderr == "error: codec 'grid-collage' does not take the option(s) points; it takes none\n"
    assert not (tmp_path / "d.png").exists()


def test_compress_names_the_methods(tmp_path: Path) -> None:
    decode_only = invoke("compress", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "x.clg"), "--method", "grid-collage")
    assert decode_only.returncode == 1 and "only decodes" in decode_only.stderr
    assert "neural-collage" in decode_only.stderr and "pifs" in decode_only.stderr  # the methods that compress
    assert not list(tmp_path.iterdir())
