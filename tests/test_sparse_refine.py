"""Semi-amortized refinement of a sparse code on its lattices: ``collagekit.fit.refine`` with a
``Quantiser``, and the sparse-collage codec's ``refine_steps``."""

from __future__ import annotations

import pytest
import torch
from collagekit_image.config import SparseCollageEncodeOptions
from collagekit_image.imageio import load_image
from collagekit_image.sparsecodec import (
    COLLAGE_KEYS,
    GREY,
    Layout,
    SparseCollageCodec,
    encode_group,
    pack_streams,
    refine_group,
    unpack_streams,
)
from conftest import DATA

from collagekit import sparse
from collagekit.colour import rgb_to_ycbcr
from collagekit.config import parse_options
from collagekit.container import from_bytes, to_bytes
from collagekit.errors import CollagekitError
from collagekit.fit import FitSettings, refine
from collagekit.gridcodec import solve_grid
from collagekit.metrics import psnr
from collagekit.search import search_tree
from collagekit.solver import Picard
from collagekit.sparse import SparseParams

CPU = torch.device("cpu")
RGB = DATA / "kodim05_64.png"
SMALL = {"range_size": 8, "levels": 3, "domain_stride": 1}
LMBDA = 100.0


def _layout() -> Layout:
    opts = parse_options("test", SparseCollageEncodeOptions, SMALL)
    return Layout(**{k: getattr(opts, k) for k in COLLAGE_KEYS})


def _luma_code(layout: Layout) -> tuple[torch.Tensor, SparseParams]:
    """kodim05's 64x64 luma plane (1 1 64 64) and its cut code."""
    y = rgb_to_ycbcr(load_image(RGB, 1 << 20).float())[:, :1]
    found = search_tree(layout.collage(), y, layout.quantiser())
    return y, encode_group(found, layout, (64, 64), LMBDA / GREY**2, contexts=False)


def _decoded_mse(layout: Layout, code: SparseParams, target: torch.Tensor) -> float:
    z, _ = solve_grid(layout.collage(), code, Picard(tol=1e-6, max_iter=500), (1, 64, 64), 1, CPU)
    return float(torch.mean((z - target) ** 2))


def test_a_decode_started_from_the_signal_reaches_the_same_fixed_point_sooner() -> None:
    """What the encoder does before fitting its deblocking filter: the iterations start from the image."""
    layout = _layout()
    y, code = _luma_code(layout)
    solver = Picard(tol=1e-5, max_iter=500)
    z, cold = solve_grid(layout.collage(), code, solver, (1, 64, 64), 1, CPU)
    warm_z, warm = solve_grid(layout.collage(), code, solver, (1, 64, 64), 1, CPU, start=y)
    assert float((z - warm_z).abs().max()) < 1e-4
    assert warm.iterations < cold.iterations


def test_refined_code_decodes_closer_on_its_lattices() -> None:
    layout = _layout()
    y, code = _luma_code(layout)
    refined = refine_group(code, layout, y, 1, 6)
    assert _decoded_mse(layout, refined, y) < _decoded_mse(layout, code, y)
    # The layout and the sources stay; a flat range stays flat.
    assert [torch.equal(a, b) for a, b in zip(refined.split, code.split)] == [True] * len(code.split)
    assert torch.equal(refined.index, code.index)
    assert torch.all(refined.weight[code.weight == 0] == 0)
    # Every value on its lattice: the streams give back the same code.
    q = layout.quantiser()
    w = sparse.effective_weights(refined.weight, layout.contraction)
    assert torch.allclose(w, q.weights(w, layout.contraction), atol=1e-6)
    assert torch.allclose(refined.bias, q.bias(refined.bias), atol=1e-6)
    shapes = {"y": (1, (64, 64))}
    back = unpack_streams(pack_streams({"y": refined}, layout, shapes), layout, shapes, 1)[0]["y"]
    assert torch.allclose(back.weight, refined.weight, atol=1e-6) and torch.allclose(back.bias, refined.bias, atol=1e-6)


def test_codec_refinement_improves_the_decode_at_no_more_bytes() -> None:
    x = load_image(RGB, 1 << 20)
    codec = SparseCollageCodec()
    results = []
    for steps in (0, 6):
        data = to_bytes(codec.encode(x, None, quality=None, device=CPU, options={**SMALL, "lmbda": LMBDA, "deblock": False, "refine_steps": steps}))
        decoded = codec.decode(from_bytes(data), None, scale=1, device=CPU, options={})
        results.append((len(data), psnr(x, decoded)))
    (base_bytes, base_psnr), (refined_bytes, refined_psnr) = results
    assert refined_psnr > base_psnr and refined_bytes <= base_bytes


def test_quantised_refinement_refuses_what_it_cannot_store() -> None:
    layout = _layout()
    y, code = _luma_code(layout)
    with pytest.raises(CollagekitError, match="fixed-point steps"):
        refine(y, layout.collage(), Picard(), code, FitSettings(steps=1, collage_steps=1, lr=0.5), layout.quantiser())


@pytest.mark.parametrize("value", [-1, 1001, "many"])
def test_bad_refine_steps_are_refused_in_one_line(value: object) -> None:
    with pytest.raises(CollagekitError, match="refine_steps") as caught:
        SparseCollageCodec().encode(load_image(RGB, 1 << 20), None, quality=None, device=CPU, options={**SMALL, "refine_steps": value})
    assert "\n" not in str(caught.value)
