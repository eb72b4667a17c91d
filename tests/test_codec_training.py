"""The shipped training recipes, run end to end through the CLI on tiny data: train, resume, export,
and compress with the exported model (the shared ``CodecTrainTask`` path of every learned codec)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import DATA, REPO, invoke

CASES = {
    "image": {
        "recipe": "image_train.yaml",
        # bsd200_2092.png is in the validation split: the recipe skips it, so one image is trained on.
        "files": {"photo_a.png": "kodim05_64.png", "bsd200_2092.png": "kodim05_64.png"},
        "overrides": ["crop=64", "model.luma.width=8", "model.chroma.width=8", "training.batch_size=1", "tol=1e-2", "max_iter=5"],
        "sample": DATA / "kodim05_64.png",
        "decoded": "d.png",
        "count": ("images", 1),
    },
    "audio": {
        "recipe": "audio_train.yaml",
        "files": {"speech_a.flac": "speech_quarter_s.flac", "music_b.flac": "trumpet_stereo_100ms.flac"},
        "overrides": ["crop=1024", "model.width=8", "training.batch_size=2", "tol=1e-2", "max_iter=5"],
        "sample": DATA / "speech_quarter_s.flac",
        "decoded": "d.wav",
        "count": ("clips", 2),
    },
    "sparse-collage shortlist": {
        "recipe": "sparse_collage_train.yaml",
        "files": {"photo_a.png": "kodim05_64.png", "bsd200_2092.png": "kodim05_64.png"},
        "overrides": ["options.range_size=8", "model.hidden=8", "model.classes=4", "training.batch_size=16"],
        "sample": DATA / "kodim05_64.png",
        "decoded": "d.png",
        "count": ("images", 1),
        "compress": ["--method", "sparse-collage", "-O", "range_size=8", "-O", "shortlist={export}"],
        "decompress": [],
    },
    "sparse-collage stream priors": {
        "recipe": "sparse_collage_prior_train.yaml",
        "files": {"photo_a.png": "kodim05_64.png", "bsd200_2092.png": "kodim05_64.png"},
        "overrides": ["options.range_size=8", "training.batch_size=1"],
        "sample": DATA / "kodim05_64.png",
        "decoded": "d.png",
        "count": ("images", 1),
        # The file names priors that are not installed: decoding is given them.
        "compress": ["--method", "sparse-collage", "-O", "range_size=8", "-O", "prior={export}"],
        "decompress": ["prior={export}"],
    },
}


@pytest.mark.parametrize("kind", list(CASES))
def test_training_recipe_trains_resumes_exports_and_the_model_compresses(kind: str, tmp_path: Path) -> None:
    case = CASES[kind]
    data = tmp_path / "data"
    data.mkdir()
    for name, source in case["files"].items():
        shutil.copy(DATA / source, data / name)
    out, export = tmp_path / "run", tmp_path / "m.safetensors"
    common = [str(REPO / "collagekit" / "recipes" / case["recipe"]), f"data={data}", f"out_dir={out}", f"export={export}", "model_name=tiny", *case["overrides"], "--device", "cpu"]

    first = invoke("run", *common, "training.steps=2", "training.checkpoint_every=2")
    assert first.returncode == 0, first.stderr
    log = json.loads((out / "train_metrics.json").read_text())
    key, count = case["count"]
    assert log["steps"] == 2 and log[key] == count and log["resumed_from"] == 0
    refused = invoke("run", *common, "training.steps=3", "training.checkpoint_every=2")
    assert refused.returncode == 1 and f"output '{export}' exists; pass --force" in refused.stderr
    assert json.loads((out / "train_metrics.json").read_text())["steps"] == 2  # refused before any training
    again = invoke("run", *common, "training.steps=3", "training.checkpoint_every=2", "--force")
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "train_metrics.json").read_text())["resumed_from"] == 2

    code = tmp_path / "x.clg"
    compress = [arg.format(export=export) for arg in case.get("compress", ["--model", "{export}"])]
    assert invoke("compress", str(case["sample"]), "-o", str(code), *compress).returncode == 0
    decoded = tmp_path / case["decoded"]
    result = invoke("decompress", str(code), "-o", str(decoded), *[arg.format(export=export) for arg in case.get("decompress", ["--model={export}"])])
    assert result.returncode == 0, result.stderr
    if decoded.suffix == ".png":
        assert Image.open(decoded).size == Image.open(case["sample"]).size


def test_training_can_start_from_a_trained_model_of_the_same_architecture(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    case = CASES["image"]
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA / "kodim05_64.png", data / "photo_a.png")
    common = [str(REPO / "collagekit" / "recipes" / case["recipe"]), f"data={data}", *case["overrides"], "training.steps=1", "--device", "cpu"]
    first = tmp_path / "first.safetensors"
    assert invoke("run", *common, f"out_dir={tmp_path / 'a'}", f"export={first}").returncode == 0
    # One step at a tiny learning rate from the first model: its weights, barely moved (a random start is far away).
    second = tmp_path / "second.safetensors"
    result = invoke("run", *common, f"init={first}", "training.lr=1e-7", "training.warmup_steps=0", f"out_dir={tmp_path / 'b'}", f"export={second}")
    assert result.returncode == 0, result.stderr
    before, after = load_file(str(first)), load_file(str(second))
    assert before.keys() == after.keys() and max(float((before[k] - after[k]).abs().max()) for k in before) < 1e-5
    with safe_open(str(second), framework="pt") as f:
        assert json.loads(f.metadata()["made_by"])["init"].startswith("custom 1 (")  # name, version, weights hash
    # Another architecture is refused in one line, before any training.
    other = invoke("run", *common, f"init={first}", "model.luma.patches=4", f"out_dir={tmp_path / 'c'}", f"export={tmp_path / 'c.safetensors'}")
    assert other.returncode == 1 and "another architecture" in other.stderr and other.stderr.strip().count("\n") == 0
    assert not (tmp_path / "c.safetensors").exists()
    unknown = invoke("run", *common, "init=nc-q99", f"out_dir={tmp_path / 'd'}", f"export={tmp_path / 'd.safetensors'}")
    assert unknown.returncode == 1 and "unknown Neural Collage model 'nc-q99'" in unknown.stderr


def test_missing_training_data_is_a_one_line_error(tmp_path: Path) -> None:
    result = invoke("run", str(REPO / "collagekit" / "recipes" / "image_train.yaml"), f"data={tmp_path / 'nowhere'}", f"out_dir={tmp_path}")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr


def test_shortlist_training_refuses_codec_options_it_would_ignore(tmp_path: Path) -> None:
    """The recipe's options: fix the layout its examples are searched with; a search or rate setting there
    would change nothing, so it is refused rather than silently ignored."""
    recipe = REPO / "collagekit" / "recipes" / "sparse_collage_train.yaml"
    result = invoke("run", str(recipe), f"data={DATA}", "options.probes=2", "options.lmbda=50", f"out_dir={tmp_path}")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "does not use lmbda, probes" in result.stderr


@pytest.mark.parametrize("recipe", ["sparse_collage_train.yaml", "sparse_collage_prior_train.yaml"])
def test_an_unreadable_training_image_is_a_one_line_error(recipe: str, tmp_path: Path) -> None:
    """The sparse-collage recipes read their images like any input: a damaged file is one error line,
    before any output is written."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA / "kodim05_64.png", data / "photo_a.png")
    (data / "photo_b.png").write_bytes(b"not an image")
    export = tmp_path / "m.safetensors"
    result = invoke("run", str(REPO / "collagekit" / "recipes" / recipe), f"data={data}", "options.range_size=8", f"out_dir={tmp_path / 'run'}", f"export={export}")
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "photo_b.png is not an image that Pillow can read safely" in result.stderr
    assert not export.exists()
