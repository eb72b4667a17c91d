"""Files written by release 0.1.0 (tests/data/release_0_1_0, made before adaptive and sparse collages)
still decode: to the very same output where the decoder's arithmetic is unchanged (dense grid collages,
learned codecs), and within a few grey levels for PIFS, whose decoding now runs through the core's
sparse collage (another start and the padding remade each step; the old decoder iterated on the
padded image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conftest import DATA, invoke

RELEASE = DATA / "release_0_1_0"
EXACT = [("fractalize_image", ".png", 1), ("fractalize_image_x2", ".png", 2), ("neural_image", ".png", 1),
         ("fractalize_audio", ".wav", 1), ("neural_audio", ".wav", 1)]  # fmt: skip
PIFS = [("pifs_grey", 1), ("pifs_colour", 1), ("pifs_colour_x2", 2)]


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".wav":
        return sf.read(path, dtype="int16")[0].astype(np.int64)
    with Image.open(path) as image:
        return np.asarray(image).astype(np.int64)


def _decode(name: str, suffix: str, scale: int, tmp_path: Path) -> Path:
    code = RELEASE / f"{name.removesuffix('_x2')}.clg"
    out = tmp_path / f"{name}{suffix}"
    result = invoke("decompress", str(code), "-o", str(out), "--scale", str(scale))
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize(("name", "suffix", "scale"), EXACT, ids=[e[0] for e in EXACT])
def test_dense_and_learned_codes_decode_to_the_same_output(name: str, suffix: str, scale: int, tmp_path: Path) -> None:
    assert np.array_equal(_read(_decode(name, suffix, scale, tmp_path)), _read(RELEASE / f"{name}{suffix}"))


@pytest.mark.parametrize(("name", "scale"), PIFS, ids=[p[0] for p in PIFS])
def test_pifs_codes_decode_through_the_core_to_within_a_few_levels(name: str, scale: int, tmp_path: Path) -> None:
    new, old = _read(_decode(name, ".png", scale, tmp_path)), _read(RELEASE / f"{name}.png")
    difference = np.abs(new - old)
    assert new.shape == old.shape
    assert difference.max() <= 3
    assert 10 * np.log10(255**2 / np.mean(difference.astype(np.float64) ** 2 + 1e-12)) > 50  # PSNR between the decodes


SPARSE_FLOAT16 = DATA / "sparse_float16"
FLOAT16 = [("fractalize_audio", ".wav", 1), ("fractalize_sparse_image", ".png", 1), ("fractalize_sparse_image_x2", ".png", 2)]


@pytest.mark.parametrize(("name", "suffix", "scale"), FLOAT16, ids=[e[0] for e in FLOAT16])
def test_sparse_codes_with_float16_values_decode_to_the_same_output(name: str, suffix: str, scale: int, tmp_path: Path) -> None:
    """Sparse codes written before their values were quantised (float16 tensors, no ``quantiser`` entry)."""
    code = SPARSE_FLOAT16 / f"{name.removesuffix('_x2')}.clg"
    out = tmp_path / f"{name}{suffix}"
    result = invoke("decompress", str(code), "-o", str(out), "--scale", str(scale))
    assert result.returncode == 0, result.stderr
    assert np.array_equal(_read(out), _read(SPARSE_FLOAT16 / f"{name}{suffix}"))
