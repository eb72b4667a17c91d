"""Image fractalization end to end: fit, save the .clg, decode it again, at scale 1 and 2; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from collagekit.container import read_container
from collagekit.gridcodec import GridCollageCodec, decode_grid
from collagekit.metrics import psnr, psnr_uint8
from collagekit.registry import get_registry
from collagekit_image.components import Dihedral, dihedral_transforms
from collagekit_image.imageio import load_image

from conftest import DATA, invoke, run_cli

FAST = ["encoder.collage_steps=30", "encoder.steps=30"]


@pytest.fixture(scope="module")
def fractal(tmp_path_factory) -> dict:
    """Fractalize the 64x64 Kodak crop through the CLI at scale 2."""
    out = tmp_path_factory.mktemp("fractal")
    result = invoke(
        "fractalize", str(DATA / "kodim05_64.png"), "-o", str(out / "out.png"), "--scale", "2",
        f"metrics={out / 'metrics.json'}", *FAST,
    )
    assert result.returncode == 0, result.stderr
    return {"dir": out, "metrics": json.loads((out / "metrics.json").read_text())}


def test_fractalize_writes_code_and_attractor_at_scale(fractal: dict) -> None:
    out = fractal["dir"]
    assert Image.open(out / "out.png").size == (128, 128)
    assert (out / "out.clg").stat().st_size == fractal["metrics"]["code_bytes"]
    assert fractal["metrics"]["lipschitz_bound"] < 0.95
    assert fractal["metrics"]["psnr_db"] > 15.0  # well above a flat grey image (~11 dB here)


def test_saved_code_reproduces_the_reported_psnr(fractal: dict) -> None:
    out = fractal["dir"]
    result = invoke("decompress", str(out / "out.clg"), "-o", str(out / "again.png"))
    assert result.returncode == 0, result.stderr
    original = np.asarray(Image.open(DATA / "kodim05_64.png").convert("RGB"))
    decoded = np.asarray(Image.open(out / "again.png"))
    assert decoded.shape == original.shape
    assert psnr_uint8(original, decoded) == pytest.approx(fractal["metrics"]["psnr_db"], abs=1e-3)


def test_scale_two_downsampled_matches_scale_one(fractal: dict) -> None:
    registry = get_registry()
    collage, params, solver, shape = GridCollageCodec.unpack(read_container(fractal["dir"] / "out.clg"), registry)
    cpu = torch.device("cpu")
    one = decode_grid(collage, params, solver, shape, 1, cpu)
    two = decode_grid(collage, params, solver, shape, 2, cpu)
    assert two.shape == (1, 3, 128, 128)
    assert psnr(one, F.avg_pool2d(two, 2)) > 40.0
    # ... and it is not a mere upsampling: the 2x decode has detail of its own.
    assert psnr(two, F.interpolate(one, scale_factor=2, mode="nearest")) < 45.0


def test_decompress_re_renders_at_a_larger_scale(fractal: dict) -> None:
    out = fractal["dir"]
    result = invoke("decompress", str(out / "out.clg"), "-o", str(out / "big.png"), "--scale", "3")
    assert result.returncode == 0, result.stderr
    assert Image.open(out / "big.png").size == (192, 192)


def test_adaptive_recipe_beats_the_uniform_grid_at_a_smaller_code(fractal: dict, tmp_path: Path) -> None:
    """fractalize --recipe with the shipped adaptive recipe: a sparse quadtree code within the uniform
    grid's file size, higher PSNR, decoding at any scale (here 2x and, from the file, 3x)."""
    recipe = "image_fractalize_adaptive"  # a shipped recipe, by name
    out = tmp_path / "adaptive.png"
    metrics = tmp_path / "adaptive.json"
    uniform = fractal["metrics"]
    # A leaf costs a byte of source index and two float32 per channel, plus split flags and the header.
    budget = uniform["code_bytes"] // (3 * 12)
    result = invoke("fractalize", str(DATA / "kodim05_64.png"), "-o", str(out), "--scale", "2", "--recipe", recipe,
                    f"encoder.ranges={budget}", f"metrics={metrics}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    adaptive = json.loads(metrics.read_text())
    assert adaptive["code"] == str(out.with_suffix(".clg")) and Image.open(out).size == (128, 128)
    assert adaptive["code_bytes"] <= uniform["code_bytes"] and adaptive["psnr_db"] > uniform["psnr_db"] + 3
    assert adaptive["lipschitz_bound"] <= 0.95  # sparse weights may sit on the bound rho itself (< 1)
    header = read_container(out.with_suffix(".clg")).header
    assert header["collage"]["mixing"] == "sparse" and header["collage"]["partitioner"]["levels"] == 4
    big = tmp_path / "big.png"
    assert invoke("decompress", str(out.with_suffix(".clg")), "-o", str(big), "--scale", "3").returncode == 0
    assert Image.open(big).size == (192, 192)


def test_grey_image_with_padding(tmp_path: Path) -> None:
    """48x40 grey image with 16x16 ranges: the bottom row of tiles is padded, the output is not."""
    result = invoke(
        "fractalize", str(DATA / "kodim15_grey_48x40.png"), "-o", str(tmp_path / "g.png"),
        "collage.partitioner.range_size=16", *FAST,
    )
    assert result.returncode == 0, result.stderr
    image = Image.open(tmp_path / "g.png")
    assert image.size == (48, 40) and image.mode == "L"


def test_fit_lowers_the_loss() -> None:
    from collagekit.recipe import validate_data

    registry = get_registry()
    config = validate_data({"task": "image_fractalize", "encoder": {"name": "fit", "collage_steps": 0, "steps": 25}}, registry)
    collage = config.collage.build(registry)
    encoder = registry.build("encoder", config.encoder)
    x = load_image(DATA / "kodim05_64.png", 1 << 20)
    encoder.encode(x, collage, registry.build("solver", config.solver))
    assert encoder.history[-1] < 0.7 * encoder.history[0]


def testdihedral_transforms_cells_are_the_seven_distinct_non_identity_elements() -> None:
    x = torch.arange(16.0).reshape(1, 1, 1, 4, 4)
    cells = dihedral_transforms(x)
    flat = {tuple(c.flatten().tolist()) for c in cells}
    assert len(cells) == 7 and len(flat) == 7
    assert tuple(x.flatten().tolist()) not in flat
    # Closed under composition with the identity included: the group D4 has 8 elements.
    group = flat | {tuple(x.flatten().tolist())}
    for c in cells:
        assert {tuple(t.flatten().tolist()) for t in dihedral_transforms(c)} <= group
    assert Dihedral()(torch.rand(2, 3, 5, 4, 4)).shape == (2, 3, 35, 4, 4)


def testdihedral_transforms_refuses_non_square_ranges(tmp_path: Path) -> None:
    result = invoke("fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "o.png"), "collage.partitioner.range_size=[4, 8]")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: dihedral cells need square 2D range cells, got range size (4, 8)"


def _assert_clean_failure(result, tmp_path: Path, needle: str) -> None:
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if p.suffix in {".png", ".clg"} or ".part" in p.name]
    assert leftovers == [] or leftovers == ["fake.png"], leftovers


def test_bad_inputs_give_one_line_errors_and_no_output(tmp_path: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("this is not a PNG")
    out = str(tmp_path / "o.png")
    _assert_clean_failure(run_cli("fractalize", str(fake), "-o", out), tmp_path, "not an image")
    _assert_clean_failure(invoke("fractalize", str(tmp_path / "missing.png"), "-o", out), tmp_path, "does not exist")
    _assert_clean_failure(invoke("fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "o.txt")), tmp_path, "must end in")
    _assert_clean_failure(
        invoke("fractalize", str(DATA / "kodim05_64.png"), "-o", out, "--scale", "64", "max_elements=1000000"),
        tmp_path, "above the limit",
    )
    notes = tmp_path / "notes.abc"
    notes.write_text("x")
    _assert_clean_failure(invoke("fractalize", str(notes), "-o", out), tmp_path, "no installed modality reads '.abc'")
    _assert_clean_failure(invoke("decompress", str(fake), "-o", out), tmp_path, "not a valid .clg file")


def test_sixteen_bit_grey_keeps_its_range(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 30 * 40).reshape(30, 40).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    x = load_image(tmp_path / "g16.png", 1 << 20)
    assert x.shape == (1, 1, 30, 40)
    assert x.max().item() == 1.0 and torch.allclose(x[0, 0], torch.from_numpy(ramp / 65535.0).float())
