"""The command line: listing, validating, running recipes, and one-line errors for user mistakes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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


# ---------------------------------------------------------------- a user's files are never destroyed
def test_outputs_never_replace_an_input_or_an_existing_file_without_force(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes((DATA / "kodim05_64.png").read_bytes())
    original = photo.read_bytes()
    victim = invoke("compress", str(photo), "-o", str(photo))
    assert victim.returncode == 1 and victim.stderr == f"error: output '{photo}' must end in .clg (a compressed file), or be a folder for several inputs\n"
    code = invoke("fractalize", str(photo), "-o", str(tmp_path / "out.png"), "--code", str(photo), *FAST)
    assert code.returncode == 1 and code.stderr == f"error: output '{photo}' is the input '{photo}'; choose another output name\n"
    assert invoke("compress", str(photo), "-o", str(tmp_path / "photo.clg")).returncode == 0
    # the README's old example: decoding at 2x onto the original's name
    trap = invoke("decompress", str(tmp_path / "photo.clg"), "-o", str(photo), "--scale", "2")
    assert trap.returncode == 1 and trap.stderr == f"error: output '{photo}' exists; pass --force to replace it (force=True in Python)\n"
    assert photo.read_bytes() == original
    again = invoke("compress", str(photo), "-o", str(tmp_path / "photo.clg"))
    assert again.returncode == 1 and "exists; pass --force" in again.stderr
    assert invoke("compress", str(photo), "-o", str(tmp_path / "photo.clg"), "-y", "--quality", "1").returncode == 0
    replaced = invoke("decompress", str(tmp_path / "photo.clg"), "-o", str(photo), "--force")
    assert replaced.returncode == 0 and photo.read_bytes() != original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.clg", "photo.png"]  # nothing half-written


def test_a_fractalize_that_fails_after_the_fit_leaves_no_file(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the metrics' folder should be")
    result = invoke("fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "f.png"), f"metrics={tmp_path / 'blocker' / 'm.json'}", *FAST)
    assert result.returncode == 1 and "cannot create the folder" in result.stderr
    folder = invoke("fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "f.png"), f"metrics={tmp_path}", *FAST)
    assert folder.returncode == 1 and "is a directory" in folder.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["blocker"]


# ---------------------------------------------------------------- recipes shipped in the package
def test_shipped_recipes_run_by_name_from_any_folder(tmp_path: Path) -> None:
    result = run_cli("run", "image_fractalize", "output=f.png", "scale=1", *FAST, "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.clg", "f.png", "outputs"]  # metrics: the recipe's outputs/fractal.json
    assert invoke("validate", "image_fractalize.yaml").returncode == 0
    missing = invoke("run", "imagefractalize")
    assert missing.returncode == 1 and "did you mean 'image_fractalize'" in missing.stderr
    old = invoke("run", "recipes/image_fractalize.yaml")
    assert old.returncode == 1 and "the shipped recipe 'image_fractalize' runs as: collagekit run image_fractalize" in old.stderr


def test_recipes_lists_prints_and_copies_without_overwriting(tmp_path: Path) -> None:
    listed = invoke("recipes")
    assert listed.returncode == 0 and "image_fractalize" in listed.stdout and "Fractalize an image" in listed.stdout
    shown = invoke("recipes", "image_compress")
    assert shown.returncode == 0 and shown.stdout.startswith("# Compress an image") and "task: image_compress" in shown.stdout
    copy = tmp_path / "mine.yaml"
    assert invoke("recipes", "image_compress", "-o", str(copy)).returncode == 0
    assert copy.read_text() == shown.stdout
    copy.write_text(copy.read_text().replace("quality: 2", "quality: 1"))
    refused = invoke("recipes", "image_compress", "-o", str(copy))
    assert refused.returncode == 1 and "exists; pass --force" in refused.stderr and "quality: 1" in copy.read_text()
    assert invoke("recipes", "image_compress", "-o", str(copy), "--force").returncode == 0 and "quality: 2" in copy.read_text()
    assert invoke("validate", str(copy)).returncode == 0


# ---------------------------------------------------------------- discoverable options
def test_list_codec_shows_each_codecs_options_with_types_and_defaults() -> None:
    result = run_cli("list", "codec", env={"COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    image = next(line for line in result.stdout.splitlines() if "neural-collage" in line)
    assert "max_pixels: int = 40000000" in image and "rdo: bool = True" in image and "deblock: bool = True" in image
    assert "points: int | None = None" in result.stdout  # the ifs codec's decoding options
    assert "only decodes" in next(line for line in result.stdout.splitlines() if "grid-collage" in line)


def test_benchmark_options_are_declared_shown_and_checked(tmp_path: Path) -> None:
    help_text = invoke("bench", "kodak", "--help")
    assert help_text.returncode == 0 and "limit: int = 10000" in help_text.stdout and "pifs: bool = True" in help_text.stdout
    assert "$COLLAGEKIT_DATA/kodak" in help_text.stdout
    unknown = invoke("bench", "kodak", "limt=2", "--data", str(tmp_path))
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: bench 'kodak' does not take the option(s) limt; it takes: limit,")
    bad = invoke("bench", "kodak", "limit=many", "--data", str(tmp_path))
    assert bad.returncode == 1 and "option limit: Input should be a valid integer" in bad.stderr


def test_benchmark_data_is_explicit(tmp_path: Path) -> None:
    no_data = run_cli("bench", "kodak", env={"COLLAGEKIT_DATA": ""}, cwd=tmp_path)
    assert no_data.returncode == 1
    assert no_data.stderr == "error: bench kodak needs its data folder: pass --data DIR, or set COLLAGEKIT_DATA to the folder that holds kodak/\n"
    wrong = run_cli("bench", "kodak", env={"COLLAGEKIT_DATA": str(tmp_path)}, cwd=tmp_path)
    assert wrong.returncode == 1 and wrong.stderr == f"error: bench kodak: data folder '{tmp_path / 'kodak'}' does not exist\n"
    assert not list(tmp_path.iterdir())


def test_each_command_has_its_own_help() -> None:
    helps = {name: invoke(name, "--help").stdout for name in ("run", "fractalize", "decompress", "compress", "validate")}
    assert "the recipe's" not in helps["fractalize"] + helps["decompress"] + helps["compress"]
    assert "encoder.steps" not in helps["decompress"] and "--points" in helps["decompress"]
    assert "--maps 8 --points 200000 --png" in " ".join(helps["fractalize"].split())
    assert "default: the recipe's device" in " ".join(helps["run"].split())


@pytest.mark.parametrize("command", [["--help"], ["plugins"], ["list"], ["schema"], ["validate", "vae_mnist"], ["recipes"]])
def test_commands_that_touch_no_tensor_import_no_torch(command: list[str]) -> None:
    """Whether, not how fast: `collagekit bench startup` times them."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "collagekit", *command], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "numpy" not in imported


def test_threads_come_from_the_command_line_over_the_recipe(tmp_path: Path) -> None:
    args = ["run", "image_fractalize", f"input={DATA / 'kodim05_64.png'}", "scale=1", *FAST, "metrics=null", "--device", "cpu"]
    recipe = run_cli(*args, "threads=2", f"output={tmp_path / 'a.png'}", cwd=tmp_path)
    assert recipe.returncode == 0, recipe.stderr
    assert re.search(r"threads\s+2\b", recipe.stdout)
    cli = run_cli("--threads", "1", *args, "threads=2", f"output={tmp_path / 'b.png'}", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert re.search(r"threads\s+1\b", cli.stdout)


def test_compress_under_torchrun_shares_the_files_between_processes(tmp_path: Path) -> None:
    """Two CPU processes (gloo): each compresses its share, every file exactly once, one table."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (images / name).write_bytes((DATA / "kodim05_64.png").read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "collagekit", "compress", str(images), "-o", str(tmp_path / "codes"), "--quality", "1", "--device", "cpu"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "codes").iterdir()) == ["a.clg", "b.clg", "c.clg"]
    assert done.stdout.count("torch threads per process") == 1  # rank 0's table only
    rows = [line for line in done.stdout.splitlines() if ".clg" in line]
    assert len(rows) == 3 and all(name in done.stdout for name in ("a.png", "b.png", "c.png"))
    same = {(tmp_path / "codes" / f"{n}.clg").read_bytes() for n in "abc"}
    assert len(same) == 1  # the same image, whichever process coded it


def test_results_files_record_their_conditions(tmp_path: Path) -> None:
    from collagekit.bench import BenchContext, write_results
    from collagekit.config import Options

    torch.set_num_threads(1)
    ctx = BenchContext(data=None, out=tmp_path, device=torch.device("cpu"), overrides=[], options=Options())
    md, js = write_results(ctx, "probe", "# probe\n\n| a |\n", {"rows": [1]})
    recorded = json.loads(js.read_text())
    assert recorded["rows"] == [1]
    conditions = recorded["conditions"]
    assert conditions["threads"] == 1 and conditions["device"] == "cpu" and conditions["cpus"] == os.cpu_count()
    assert isinstance(conditions["load_average_start"], float) and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d.*", conditions["date"])
    assert re.fullmatch(r"[0-9a-f]{12}(\+changes)?", conditions["commit"])  # the tests run from the checkout
    assert conditions["cpu"] and conditions["command"]
    text = md.read_text()
    assert text.startswith("# probe\n") and "## Conditions" in text and "| threads | 1 |" in text
