"""CUDA paths end to end (marked ``gpu``: skipped where there is no CUDA device).

Codes made on the GPU must decode on the CPU (and the other way round) to the same data: the
files are device-independent, only the arithmetic moves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli

pytestmark = pytest.mark.gpu
IMAGE = Path(__file__).parent / "data" / "kodim05_64.png"


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64)


def test_fractalize_on_cuda_decodes_the_same_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "f.png"
    done = run_cli("fractalize", str(IMAGE), "-o", str(out), "--device", "cuda", "encoder.steps=30", "encoder.collage_steps=20")
    assert done.returncode == 0, done.stderr
    on_cpu = tmp_path / "cpu.png"
    done = run_cli("decompress", str(out.with_suffix(".clg")), "-o", str(on_cpu), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert np.abs(_pixels(out) - _pixels(on_cpu)).max() <= 1  # one 8-bit level of float rounding


@pytest.mark.parametrize("method", ["pifs"])
def test_compress_on_cuda_and_decode_on_both(tmp_path: Path, method: str) -> None:
    code = tmp_path / "c.clg"
    done = run_cli("compress", str(IMAGE), "-o", str(code), "--method", method, "--device", "cuda")
    assert done.returncode == 0, done.stderr
    decoded = {}
    for device in ("cuda", "cpu"):
        decoded[device] = tmp_path / f"{device}.png"
        done = run_cli("decompress", str(code), "-o", str(decoded[device]), "--device", device)
        assert done.returncode == 0, done.stderr
    assert np.abs(_pixels(decoded["cuda"]) - _pixels(decoded["cpu"])).max() <= 1


def test_chaos_game_on_cuda_stays_on_the_attractor() -> None:
    from collagekit_pointcloud.chaos import chaos_game
    from collagekit_pointcloud.targets import sierpinski_tetrahedron

    ifs = sierpinski_tetrahedron()
    points, labels = chaos_game(ifs, 200_000, device="cuda")
    assert points.device.type == "cuda" and points.shape == (200_000, 3)
    assert torch.isfinite(points).all()
    assert int(labels.max()) == ifs.maps - 1
    # Each point's map label must be consistent: the point lies in f_label(attractor), so applying
    # the map to the whole cloud covers it. Check coarse coverage: every labelled piece is non-empty
    # and the cloud fills the unit tetrahedron's bounding box, as the CPU renderer's does.
    cpu_points, _ = chaos_game(ifs, 200_000, device="cpu")
    torch.testing.assert_close(points.cpu().mean(0), cpu_points.mean(0), rtol=0, atol=0.01)
