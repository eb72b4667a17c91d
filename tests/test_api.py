"""The Python API: inputs in every form a user has them, outputs as bytes and tensors, files written safely.

docs/api.md shows the same functions as doctests; these tests cover the forms and the failures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import collagekit
from collagekit.errors import CollagekitError
from collagekit_pointcloud.tasks import sample_cloud

from conftest import DATA

PHOTO = DATA / "kodim05_64.png"
GREY = DATA / "kodim15_grey_48x40.png"
SPEECH = DATA / "speech_quarter_s.flac"
FAST = ["encoder.collage_steps=5", "encoder.steps=5"]


def test_import_is_light_and_exports_the_api() -> None:
    """``import collagekit`` imports no torch; the API and the building blocks resolve on first use."""
    code = (
        "import sys, collagekit; assert 'torch' not in sys.modules, 'torch imported';"
        "names = ['compress', 'decompress', 'fractalize', 'load_code', 'save_code', 'GridCollage', 'fixed_point', 'get_registry'];"
        "assert all(callable(getattr(collagekit, n)) for n in names); print(sorted(set(names) - set(dir(collagekit))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        collagekit.nonesuch  # noqa: B018


def test_an_image_compresses_the_same_from_a_path_pil_numpy_and_a_tensor() -> None:
    code = collagekit.compress(PHOTO, device="cpu")
    with Image.open(PHOTO) as image:
        pixels = np.asarray(image.convert("RGB"))
        assert collagekit.compress(image, device="cpu") == code
    assert collagekit.compress(pixels, device="cpu") == code  # (h w c) uint8, as Pillow gives it
    assert collagekit.compress(pixels.astype(np.float64) / 255, device="cpu") == code  # floats in [0, 1]
    chw = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255  # torchvision's layout
    assert collagekit.compress(chw, device="cpu") == code
    decoded = collagekit.decompress(code, device="cpu")
    assert decoded.shape == (3, 64, 64) and decoded.dtype == torch.float32
    assert 0.0 <= float(decoded.min()) and float(decoded.max()) <= 1.0
    assert collagekit.decompress(code, scale=3, device="cpu").shape == (3, 192, 192)
    with Image.open(GREY) as grey:
        assert collagekit.decompress(collagekit.compress(grey, device="cpu"), device="cpu").shape == (1, 40, 48)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((4, 4, 2), dtype=np.uint8), r"must be \(h w\) or \(h w c\) with c = 1 or 3"),
        (np.zeros((4, 4), dtype=np.int64), "uint8 .0..255. or floats"),
        (torch.zeros(2, 3, 8, 8), r"\(c h w\) or \(1 c h w\)"),
        ("not a file.png", "does not exist"),
        ([1, 2, 3], "cannot read an image from a list"),
    ],
)
def test_bad_images_in_memory_are_one_line(data: object, message: str) -> None:
    with pytest.raises(CollagekitError, match=message):
        collagekit.compress(data, device="cpu")


def test_audio_in_memory_needs_its_rate_and_decodes_to_a_waveform() -> None:
    wave, rate = sf.read(str(SPEECH), dtype="float32")
    code = collagekit.compress(wave, modality="audio", sample_rate=rate, device="cpu")
    assert code == collagekit.compress(SPEECH, device="cpu")  # the file and its samples: one code
    assert collagekit.load_code(code).header["signal_attrs"] == {"sample_rate": rate}
    decoded = collagekit.decompress(code, scale=2, device="cpu")
    assert decoded.shape == (1, 2 * len(wave)) and float(decoded.abs().max()) <= 1.0  # (c n) in [-1, 1]
    snr = 10 * np.log10(np.sum(wave**2) / np.sum((wave - collagekit.decompress(code, device="cpu")[0].numpy()) ** 2))
    assert snr > 5  # the waveform, not the [0, 1] storage
    with pytest.raises(CollagekitError, match="needs its sample_rate"):
        collagekit.compress(wave, modality="audio", device="cpu")
    with pytest.raises(CollagekitError, match="a file carries its own"):
        collagekit.compress(SPEECH, sample_rate=8000, device="cpu")


def test_points_in_memory_fractalize_and_render(tmp_path: Path) -> None:
    from collagekit_pointcloud.cloudio import load_cloud

    points = load_cloud(sample_cloud(), 1 << 26)[0].T.numpy()  # (n 3), open3d's layout
    fields = {"maps": 2, "points": 500, "fit": {"steps": 10, "register_steps": 2, "sample": 128, "restarts": 1, "trials": 1, "trial_steps": 5}}
    fractal = collagekit.fractalize(points, modality="pointcloud", device="cpu", **fields)
    assert fractal.decoded.shape == (500, 6)  # points in rows, RGB by map after x y z
    assert fractal.metrics["input"] == "<memory>" and fractal.metrics["maps"] == 2
    assert collagekit.decompress(fractal.code, options={"points": 50}, device="cpu").shape == (50, 6)
    with pytest.raises(CollagekitError, match="identical"):
        collagekit.fractalize(np.ones((10, 3)), modality="pointcloud", device="cpu", **fields)


def test_fractalize_in_memory_matches_its_code_and_writes_nothing_unasked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Image.open(PHOTO) as image:
        fractal = collagekit.fractalize(image, scale=2, overrides=FAST, device="cpu")
    assert fractal.decoded.shape == (3, 128, 128)
    assert torch.equal(collagekit.decompress(fractal.code, scale=2, device="cpu"), fractal.decoded)
    assert not list(tmp_path.iterdir())
    with pytest.raises(CollagekitError, match="unknown encoder 'fitt'"):
        collagekit.fractalize(PHOTO, overrides=["encoder.name=fitt"], device="cpu")


def test_written_files_are_whole_and_never_replace_inputs_or_existing_files(tmp_path: Path) -> None:
    code = collagekit.compress(PHOTO, tmp_path / "a.clg", device="cpu")
    assert (tmp_path / "a.clg").read_bytes() == code
    with pytest.raises(CollagekitError, match="exists; pass --force"):
        collagekit.compress(PHOTO, tmp_path / "a.clg", device="cpu")
    assert collagekit.compress(PHOTO, tmp_path / "a.clg", quality=1, force=True, device="cpu") != code
    copy = tmp_path / "photo.png"
    copy.write_bytes(PHOTO.read_bytes())
    for call in (
        lambda: collagekit.fractalize(copy, copy, overrides=FAST, device="cpu"),
        lambda: collagekit.fractalize(copy, tmp_path / "f.png", code=copy, overrides=FAST, device="cpu"),
    ):
        with pytest.raises(CollagekitError, match="is the input"):
            call()
    with pytest.raises(CollagekitError, match="must end in .clg"):  # and so never onto its image input
        collagekit.compress(copy, copy, device="cpu")
    with pytest.raises(CollagekitError, match="exists; pass --force"):  # the README's old trap: decoding over the original
        collagekit.decompress(tmp_path / "a.clg", copy, scale=2, device="cpu")
    assert copy.read_bytes() == PHOTO.read_bytes()
    with pytest.raises(CollagekitError, match="is not a valid .clg file"):
        collagekit.save_code(b"not a code", tmp_path / "b.clg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.clg", "photo.png"]


def test_fractalize_files_appear_together_or_not_at_all(tmp_path: Path) -> None:
    """A step that fails after the fit (here: the metrics file's folder cannot be made) leaves no file."""
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(CollagekitError, match="cannot create the folder"):
        collagekit.fractalize(PHOTO, tmp_path / "f.png", metrics=tmp_path / "blocker" / "m.json", overrides=FAST, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
    with pytest.raises(CollagekitError, match="is a directory"):  # refused before the fit
        collagekit.fractalize(PHOTO, tmp_path / "f.png", metrics=tmp_path, overrides=FAST, device="cpu")
    fractal = collagekit.fractalize(PHOTO, tmp_path / "out" / "f.png", metrics=tmp_path / "m.json", overrides=FAST, device="cpu")
    assert (tmp_path / "out" / "f.clg").read_bytes() == fractal.code and (tmp_path / "m.json").is_file()
    assert fractal.metrics["output"] == str(tmp_path / "out" / "f.png")


def test_compress_files_takes_folders_and_refuses_two_outputs_of_one_name(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        (images / name).write_bytes(PHOTO.read_bytes())
    (images / "notes.txt").write_text("not an image")
    rows = collagekit.compress_files([images], tmp_path / "codes", quality=1, device="cpu")
    assert [(r.input.name, r.output.name) for r in rows] == [("a.png", "a.clg"), ("b.png", "b.clg")]
    assert all(r.bytes == r.output.stat().st_size and r.bits_per_element > 0 for r in rows)
    (images / "a.jpg").write_bytes((images / "a.png").read_bytes())
    with pytest.raises(CollagekitError, match="named as two outputs"):
        collagekit.compress_files([images / "a.png", images / "a.jpg"], tmp_path / "other", device="cpu")
    assert not (tmp_path / "other").exists()
