"""The PIFS plugin: transforms, search, quadtree codes, the bitstream, decoding, the CLI and the recipe task."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from collagekit import sparse, tree
from collagekit.container import Container, from_bytes, read_container, to_bytes, write_container
from collagekit.gridcodec import solve_grid
from collagekit.solver import Anderson, Picard
from collagekit.errors import CollagekitError
from collagekit.metrics import psnr
from collagekit_image.components import dihedral_transforms
from collagekit_image.imageio import load_image
from collagekit_pifs import transforms
from collagekit_pifs.decoder import as_collage, as_sparse
from collagekit.colour import rgb_to_ycbcr, ycbcr_to_rgb
from collagekit_pifs.params import PifsParams
from collagekit_pifs.pifscodec import PifsCodec, contraction_bound, decode_image, encode_image, read_code
from collagekit_pifs import search as search_module
from collagekit_pifs.encoder import _blocks, domain_positions, fit_codes, pad_image, padded_size, top_positions, top_size
from collagekit_pifs.search import best_candidates, search

from conftest import DATA, invoke

CPU = torch.device("cpu")
GREY = DATA / "kodim15_grey_48x40.png"
RGB = DATA / "kodim05_64.png"
SMALL = {"max_range": 8, "min_range": 2, "domain_stride": 2}  # several quadtree levels on tiny images


def _encode(path: Path, **options) -> Container:
    return PifsCodec().encode(load_image(path, 1 << 20), None, quality=None, device=CPU, options=options)


def _decode(container: Container, scale: int = 1, **options) -> torch.Tensor:
    return PifsCodec().decode(from_bytes(to_bytes(container)), None, scale=scale, device=CPU, options=options)


# ---------------------------------------------------------------- transforms
def test_the_eight_transforms_are_distinct_and_form_the_group() -> None:
    block = torch.arange(16.0).reshape(4, 4)
    images = transforms.all_transforms(block)
    assert images.shape == (8, 4, 4)
    assert len({tuple(img.flatten().tolist()) for img in images}) == 8
    assert torch.equal(images[0], block)  # index 0 is the identity, never duplicated
    for t, img in enumerate(dihedral_transforms(block), start=1):  # one shared definition
        assert torch.equal(images[t], img)
    compose, inverse = transforms.tables()
    for a in range(8):
        assert torch.equal(transforms.apply(int(compose[a, inverse[a]]), block), block)
        for b in range(8):
            assert torch.equal(transforms.apply(int(compose[a, b]), block), transforms.apply(a, transforms.apply(b, block)))


@pytest.mark.parametrize("size", [2, 4, 8])
def test_decoder_permutations_agree_with_encoder_transforms(size: int) -> None:
    block = torch.rand(size, size)
    perms = transforms.block_permutations(size)
    for t in range(8):
        assert torch.equal(block.flatten()[perms[t]].reshape(size, size), transforms.apply(t, block))


# ---------------------------------------------------------------- search
def test_closed_form_search_matches_brute_force() -> None:
    torch.manual_seed(0)
    params = PifsParams(s_bits=4, s_max=0.9)
    ranges, cands = torch.rand(7, 16), torch.rand(30, 16)
    cands[3] = 0.5  # a flat candidate must not produce NaN
    index, _ = best_candidates(ranges, cands, params)
    for k in range(7):
        errors = []
        for m in range(30):
            r, d = ranges[k], cands[m]
            dc = d - d.mean()
            s = float((r - r.mean()) @ dc / (dc @ dc)) if float(dc @ dc) > 1e-12 else 0.0
            s = round(max(-0.9, min(0.9, s)) / params.s_step) * params.s_step
            o = r.mean() - s * d.mean()
            errors.append(float(((s * d + o - r) ** 2).sum()))
        assert errors[int(index[k])] <= min(errors) + 1e-5


def test_searches_find_an_exact_transformed_copy() -> None:
    """A range that is s * T(D) + o for a domain D is found with the right domain and transform."""
    torch.manual_seed(1)
    params = PifsParams()
    domains = torch.rand(40, 8, 8)
    # Give the four sources the largest contrast, so that they are in nearest's lean domain pool.
    for i in (3, 17, 29, 11):
        domains[i] = (domains[i] - 0.5) * 1.5 + 0.5
    ranges = torch.stack([0.5 * transforms.apply(t, domains[d]) + 0.2 for d, t in [(3, 0), (17, 5), (29, 7)]])
    ranges = torch.cat([ranges, (-0.5 * transforms.apply(2, domains[11]) + 0.8)[None]])
    for method in ("exhaustive", "classified", "nearest"):
        d, t = search(ranges, domains, params, method)
        assert d.tolist() == [3, 17, 29, 11], method
        assert t.tolist() == [0, 5, 7, 2], method


def test_orientation_table_picks_the_largest_rank_order() -> None:
    """classify's lookup table agrees with its definition: of the 8 turned rank grids, the largest."""
    torch.manual_seed(3)
    blocks = torch.rand(50, 4, 4)
    canonical, key = search_module.classify(blocks, "major")
    weights = torch.tensor(search_module.RANK_WEIGHTS)
    for i in range(50):
        means = blocks[i].reshape(2, 2, 2, 2).mean((1, 3))  # (2 2) quadrant means
        ranks = means.flatten().argsort().argsort().reshape(2, 2)
        keys = [int((transforms.apply(t, ranks).flatten() * weights).sum()) for t in range(8)]
        assert keys[int(canonical[i])] == max(keys) == int(key[i])


def test_nearest_clusters_are_the_top_cosines_in_order() -> None:
    torch.manual_seed(4)
    x, centroids = torch.randn(30, 16), torch.randn(12, 16)
    expected = (x @ centroids.T).topk(4, 1).indices
    assert torch.equal(search_module._nearest_clusters(x, centroids, 4), expected)
    assert search_module._nearest_clusters(x, centroids, 12).shape == (30, 12)


def _luma_blocks(r: int) -> tuple[torch.Tensor, torch.Tensor, PifsParams]:
    """Range blocks (k r r) and pooled domain blocks (d r r) of the 64x64 test photo's luma."""
    params = PifsParams()
    x = rgb_to_ycbcr(load_image(RGB, 1 << 20))[0, 0]
    pooled = torch.nn.functional.avg_pool2d(x[None, None], 2)[0, 0]
    domains = _blocks(pooled, domain_positions(params, r, (64, 64)) // 2, r)
    return _blocks(x, top_positions((64, 64), r), r), domains, params


def test_nearest_search_is_close_to_exhaustive(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a real image the nearest search's matches cost at most a little more than the best ones.

    Small clusters, so that this small image is split into 14 of them and each query sees 4."""
    monkeypatch.setattr(search_module, "CLUSTER_SIZE", 8)
    ranges, domains, params = _luma_blocks(4)
    errors = {}
    for method in ("exhaustive", "nearest"):
        d, t = search(ranges, domains, params, method)
        chosen = transforms.turn(domains[d], t).reshape(ranges.shape[0], -1)
        errors[method] = float(fit_codes(ranges.reshape(ranges.shape[0], -1), chosen, params)[2].sum())
    assert errors["exhaustive"] <= errors["nearest"] <= 1.12 * errors["exhaustive"]


def test_nearest_search_is_deterministic_and_its_codes_decode() -> None:
    ranges, domains, params = _luma_blocks(4)
    first, second = search_module.nearest_search(ranges, domains, params), search_module.nearest_search(ranges, domains, params)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert bool(((first[0] >= 0) & (first[0] < domains.shape[0]) & (first[1] >= 0) & (first[1] < 8)).all())
    one, two = _encode(RGB, rms=4.0, search="nearest", **SMALL), _encode(RGB, rms=4.0, search="nearest", **SMALL)
    assert to_bytes(one) == to_bytes(two)
    x = load_image(RGB, 1 << 20)
    exhaustive = _encode(RGB, rms=4.0, search="exhaustive", **SMALL)
    assert psnr(x, _decode(one)) > psnr(x, _decode(exhaustive)) - 0.5


# ---------------------------------------------------------------- codes and decoding
def test_grey_round_trip_and_any_scale() -> None:
    x = load_image(GREY, 1 << 20)
    container = _encode(GREY, rms=2.0, **SMALL)
    assert container.header["codec"] == "pifs" and container.header["modality"] == "image"
    y = _decode(container)
    assert y.shape == x.shape and 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    assert psnr(x, y) > 33.0
    big = _decode(container, scale=3)
    assert big.shape == (1, 1, 3 * x.shape[2], 3 * x.shape[3])
    # The 3x decode, averaged back down, is close to the 1x one (same code, same attractor up to detail).
    small = torch.nn.functional.avg_pool2d(big, 3)
    assert psnr(y, small) > 27.0


@pytest.mark.parametrize("colour", ["ycbcr", "rgb"])
def test_colour_round_trip(colour: str) -> None:
    x = load_image(RGB, 1 << 20)
    container = _encode(RGB, rms=3.0, colour=colour, **SMALL)
    assert container.header["colour"] == colour
    y = _decode(container)
    assert y.shape == x.shape
    assert psnr(x, y) > 26.0


def test_rate_knob_trades_bits_for_quality() -> None:
    x = load_image(RGB, 1 << 20)
    sizes, quality = [], []
    for rms in (2.0, 6.0, 16.0):
        container = _encode(RGB, rms=rms, **SMALL)
        sizes.append(len(to_bytes(container)))
        quality.append(psnr(x, _decode(container)))
    assert sizes[0] > sizes[1] > sizes[2]
    assert quality[0] > quality[1] > quality[2]


def test_every_quantised_code_is_contractive() -> None:
    params = PifsParams()
    every = torch.arange(params.s_levels)
    assert float(params.s_value(every).abs().max()) == pytest.approx(params.s_max)
    assert params.s_value(torch.tensor(params.s_zero)) == 0.0
    codes, _, _, _ = encode_image(load_image(RGB, 1 << 20), params, 1.0 / 255, "exhaustive")
    info = {"top": top_size(params, (64, 64)), "padded": padded_size((64, 64), top_size(params, (64, 64)))}
    assert 0.0 < contraction_bound(codes, params, info) <= params.s_max < 1.0
    for bad in (1.0, 1.3, 0.0):
        with pytest.raises(CollagekitError, match="s_max"):
            PifsParams(s_max=bad)


def _core(codes: list, params: PifsParams, info: dict) -> tuple:
    """A PIFS code as the core's collage and sparse code."""
    return as_collage(params, info["top"], len(codes[0].levels)), as_sparse(codes, params, info["padded"])


def test_decoded_image_is_a_fixed_point_of_the_core_collage() -> None:
    codes, params, info = read_code(from_bytes(to_bytes(_encode(RGB, rms=4.0, **SMALL))))
    tol = 1e-5
    z, stats = decode_image(codes, params, {**info, "colour": "rgb"}, 1, CPU, method="picard", tol=tol, max_iter=500)
    assert stats.converged
    collage, code = _core(codes, params, info)
    # Planes are YCbCr as stored; the attractor, before colour conversion and clamping, is the solver's.
    z, _ = solve_grid(collage, code, Picard(tol=tol, max_iter=500), (3, *info["spatial"]), 1, CPU)
    step = collage.step_fn(code, info["spatial"])
    assert float((step(z) - z).abs().max()) <= tol
    # Anderson reaches the same attractor (it is unique).
    z2, _ = solve_grid(collage, code, Anderson(tol=tol, max_iter=500), (3, *info["spatial"]), 1, CPU)
    assert float((z2 - z).abs().max()) < 1e-3


def test_encoder_and_decoder_agree_on_every_block() -> None:
    """One step of the core collage applied to the original image reproduces every leaf within the
    encoder's target.

    The encoder keeps a block (above the minimum size) only when its own reconstruction s T(D) + o meets
    the RMS target; if the core read a transform, domain or position differently, blocks would miss it.
    """
    x = load_image(GREY, 1 << 20)
    tol = 3.0 / 255
    params = PifsParams(**SMALL)
    codes, spatial, top, padded = encode_image(x, params, tol, "exhaustive", size_exponent=0.0)
    collage, code = _core(codes, params, {"top": top, "padded": padded})
    once = sparse.pad_to(collage.step_fn(code, spatial)(x), padded)[0, 0]
    image = pad_image(x[0], padded)[0]
    part = collage.partitioner
    checked = 0
    for cells in tree.leaves(code.split, 1, part.range_grid(spatial), part.range_size(1), part.levels)[:-1]:
        r = cells.size[0]
        for y, xx in cells.origin.tolist():
            if y + r > spatial[0] or xx + r > spatial[1]:
                continue  # the step's output is cropped to the image; padding is re-made each step
            block_rms = float(((once[y : y + r, xx : xx + r] - image[y : y + r, xx : xx + r]) ** 2).mean().sqrt())
            assert block_rms <= tol + 1e-5
            checked += 1
    assert checked > 0


def test_ycbcr_conversion_inverts() -> None:
    x = torch.rand(1, 3, 5, 7)
    y = rgb_to_ycbcr(x)
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    assert torch.allclose(ycbcr_to_rgb(y), x, atol=1e-5)


# ---------------------------------------------------------------- bad files, bad parameters
def _tampered(container: Container, **header) -> Container:
    return Container({**container.header, **header}, dict(container.tensors))


def test_bad_files_give_one_line_errors(tmp_path: Path) -> None:
    good = _encode(GREY, rms=4.0, **SMALL)
    streams = good.tensors["streams"]
    flipped = streams.clone()
    flipped[len(flipped) // 2] ^= 0x21
    cases = {
        "truncated streams": Container(good.header, {"streams": streams[:-9]}),
        "flipped byte": Container(good.header, {"streams": flipped}),
        "wrong size": _tampered(good, signal={"channels": 1, "spatial": [48, 64]}),
        "huge size": _tampered(good, signal={"channels": 1, "spatial": [1 << 20, 1 << 20]}),
        "grey as colour": _tampered(good, colour="ycbcr"),
        "bad params": _tampered(good, pifs={**good.header["pifs"], "s_max": 1.5}),
        "other params": _tampered(good, pifs={**good.header["pifs"], "max_range": 16}),
        "missing params": Container({k: v for k, v in good.header.items() if k != "pifs"}, dict(good.tensors)),
        "bad solver": _tampered(good, solver={"method": "newton", "tol": 1e-4, "max_iter": 5}),
        "float tensor": Container(good.header, {"streams": streams.float()}),
        "extra tensor": Container(good.header, {"streams": streams, "x": torch.zeros(2)}),
    }
    for name, container in cases.items():
        with pytest.raises(CollagekitError) as info:
            _decode(container)
        message = str(info.value)
        assert "\n" not in message and ("corrupt" in message or "PIFS" in message), (name, message)
    # The whole file: the container layer and the CLI report one line too.
    path = tmp_path / "x.clg"
    write_container(path, good)
    data = path.read_bytes()
    (tmp_path / "cut.clg").write_bytes(data[: len(data) - 20])
    result = invoke("decompress", str(tmp_path / "cut.clg"), "-o", str(tmp_path / "cut.png"))
    assert result.returncode == 1 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_bad_parameters_give_clear_errors() -> None:
    x = load_image(GREY, 1 << 20)
    codec = PifsCodec()
    for options, match in [
        ({"search": "fastest"}, "option search: Input should be 'exhaustive'"),
        ({"max_range": 12}, "powers of two"),
        ({"min_range": 16, "max_range": 8}, "powers of two"),
        ({"s_max": 1.0}, "s_max"),
        ({"rms": -1.0}, "option rms: Input should be greater than 0"),
        ({"o_bits": "many"}, "option o_bits: Input should be a valid integer"),
        ({"speed": 3}, "does not take the option"),
    ]:
        with pytest.raises(CollagekitError, match=match):
            codec.encode(x, None, quality=None, device=CPU, options=options)
    with pytest.raises(CollagekitError, match="quality"):
        codec.encode(x, None, quality=101, device=CPU, options={})
    with pytest.raises(CollagekitError, match="too small"):
        codec.encode(torch.rand(1, 1, 3, 3), None, quality=None, device=CPU, options={})
    with pytest.raises(CollagekitError, match="grey or RGB"):
        codec.encode(torch.rand(1, 2, 16, 16), None, quality=None, device=CPU, options={})
    with pytest.raises(CollagekitError, match="does not take"):
        _decode(_encode(GREY, **SMALL), points=5)


# ---------------------------------------------------------------- CLI and recipe task
def test_cli_compress_and_decompress(tmp_path: Path) -> None:
    out = tmp_path / "k.clg"
    made = invoke("compress", str(RGB), "--method", "pifs", "--quality", "70", "-o", str(out), "-O", "search=exhaustive")
    assert made.returncode == 0, made.stderr
    assert read_container(out).header["codec"] == "pifs"
    result = invoke("decompress", str(out), "-o", str(tmp_path / "k.png"), "--scale", "2")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "k.png") as image:
        assert image.size == (128, 128) and image.mode == "RGB"
    bad = invoke("compress", str(RGB), "--method", "pifs", "-o", str(tmp_path / "b.clg"), "-O", "search=fast")
    assert bad.returncode == 1 and bad.stderr.startswith("error: codec 'pifs' option search: Input should be")


def test_bench_rejects_bad_options_and_missing_data(tmp_path: Path) -> None:
    bad = invoke("bench", "pifs", "searches=exhaustive,fastest", "--data", str(tmp_path), "--out", str(tmp_path))
    assert bad.returncode == 1 and bad.stderr.startswith("error: pifs bench: searches must be from")
    missing = invoke("bench", "pifs", "--data", str(tmp_path), "--out", str(tmp_path))
    assert missing.returncode == 1 and missing.stderr.startswith("error: missing Kodak images")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_recipe_task_writes_code_image_and_metrics(tmp_path: Path) -> None:
    result = invoke(
        "run", str(Path(__file__).resolve().parents[1] / "collagekit" / "recipes" / "pifs_baseline.yaml"),
        f"input={RGB}", f"output={tmp_path / 'p.png'}", f"code={tmp_path / 'p.clg'}", f"metrics={tmp_path / 'p.json'}",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "p.json").read_text())
    size = (tmp_path / "p.clg").stat().st_size
    assert metrics["code_bytes"] == size
    assert metrics["bpp"] == pytest.approx(size * 8 / (64 * 64), abs=1e-3)
    assert math.isfinite(metrics["psnr_db"]) and metrics["psnr_db"] > 20
    assert 0 < metrics["lipschitz_bound"] < 1
    decoded = load_image(tmp_path / "p.png", 1 << 20)
    assert psnr(load_image(RGB, 1 << 20), decoded) == pytest.approx(metrics["psnr_db"], abs=0.01)


def test_plugin_entry_module_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = "import sys, collagekit_pifs.plugin; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_uint8_helpers_are_not_used_on_differences() -> None:
    """Sanity of the metric path the benchmark uses: PSNR of an image against itself plus one level."""
    a = np.full((8, 8), 100, dtype=np.uint8)
    from collagekit.metrics import psnr_uint8

    assert psnr_uint8(a, a - 1) == pytest.approx(10 * math.log10(255**2))


def test_the_declared_searches_are_the_implemented_ones() -> None:
    """The options model (collagekit list codec, recipes) and the search module name the same searches."""
    import typing

    from collagekit_pifs.config import Search
    from collagekit_pifs.search import SEARCHES

    assert set(typing.get_args(Search)) == set(SEARCHES)
