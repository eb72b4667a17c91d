"""The sparse-collage image codec and the search's rate-distortion cut it is built on."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from collagekit_image.components import ImageTiles
from collagekit_image.imageio import load_image
from collagekit_image.sparsecodec import (
    COLLAGE_KEYS,
    PRESETS,
    SHIPPED_PRIORS,
    Layout,
    SparseCollageCodec,
    as_stored,
    pack_streams,
    priors_of_file,
    read_header,
    search_codes,
    stream_priors,
    unpack_streams,
)
from collagekit_image.config import SparseCollageEncodeOptions
from conftest import DATA, invoke
from PIL import Image

from collagekit import search as search_module
from collagekit.codec import as_tensor
from collagekit.colour import rgb_to_ycbcr
from collagekit.container import (
    Container,
    from_bytes,
    read_container,
    to_bytes,
    write_container,
)
from collagekit.errors import CollagekitError
from collagekit.grid import AveragePooler
from collagekit.gridcodec import solve_grid
from collagekit.metrics import psnr
from collagekit.operator import GridCollage
from collagekit.search import LevelCodes, Quantiser, RateModel, _cut_rd, search_tree

CPU = torch.device("cpu")
GREY = DATA / "kodim15_grey_48x40.png"
RGB = DATA / "kodim05_64.png"
SMALL = {"range_size": 8, "levels": 3, "domain_stride": 1}  # 8, 4 and 2 pixel ranges on tiny images


def _encode(path: Path, **options) -> Container:
    return SparseCollageCodec().encode(load_image(path, 1 << 20), None, quality=None, device=CPU, options={**SMALL, **options})


def _decode(container: Container, scale: int = 1, **options) -> torch.Tensor:
    return SparseCollageCodec().decode(from_bytes(to_bytes(container)), None, scale=scale, device=CPU, options=options)


# ---------------------------------------------------------------- the rate-distortion cut
def _codes(m: int, generator: torch.Generator) -> LevelCodes:
    """Random candidate codes of m cells, one source each (then the flat code), weights on a lattice of step 0.25."""
    weight = (torch.randint(-3, 4, (m, 1, 1), generator=generator) * 0.25).float()
    weight = torch.cat([weight, torch.zeros(m, 1, 1)], 1)
    error = torch.stack([torch.rand(m, generator=generator) * 10, torch.rand(m, generator=generator) * 20], 1)
    return LevelCodes(torch.zeros(m, 2, 1, dtype=torch.long), weight, torch.zeros(m, 2), error)


@pytest.mark.parametrize("flat_bias_bits", [None, 9.0])
def test_rate_distortion_cut_is_the_best_cut(flat_bias_bits: float | None) -> None:
    """Two levels over two top cells of a 1D tree (2 children each): every cut and every flat choice
    enumerated; the cut's cost is the least of them (also when a flat code's bias costs its own bits)."""
    generator = torch.Generator().manual_seed(3)
    quantiser = Quantiser(0.25, 0.01)
    rate = RateModel(torch.tensor([4.0, 3.0, 2.5, 1.0, 2.5, 3.0, 4.0]), (5.0, 3.0), 6.0, split_bits=1.0, flat_bias_bits=flat_bias_bits)
    flat_bias = rate.bias_bits if flat_bias_bits is None else flat_bias_bits
    for lmbda in (0.05, 0.5, 5.0):
        levels = [_codes(2, generator), _codes(4, generator)]
        leaf, choice = _cut_rd(levels, 2, lmbda, rate, quantiser)

        def cost(level: int, node: int, as_flat: bool, levels: list[LevelCodes] = levels, lmbda: float = lmbda) -> float:
            codes = levels[level]
            if as_flat:
                return float(codes.error[node, 1]) + lmbda * (float(rate.weight_bits[3]) + flat_bias)
            k = round(float(codes.weight[node, 0, 0]) / 0.25) + 3
            index, bias = (rate.index_bits[level], rate.bias_bits) if k != 3 else (0.0, flat_bias)
            return float(codes.error[node, 0]) + lmbda * (float(rate.weight_bits[k]) + index + bias)

        best = float("inf")
        for splits in itertools.product((False, True), repeat=2):
            total = 2 * lmbda * rate.split_bits
            for top, split in enumerate(splits):
                cells = [(1, 2 * top), (1, 2 * top + 1)] if split else [(0, top)]
                total += sum(min(cost(lv, n, False), cost(lv, n, True)) for lv, n in cells)
            best = min(best, total)
        chosen = 2 * lmbda * rate.split_bits
        for level, mask in enumerate(leaf):
            for node in mask.nonzero().flatten().tolist():
                chosen += cost(level, node, bool(choice[level][node] == 1))
        assert chosen == pytest.approx(best, rel=1e-6)


def test_quantised_search_refits_the_bias_and_reports_the_true_collage_error() -> None:
    """One level, so every cell is a leaf: the code the cut returns lies on the lattices, and one collage
    step of it on the image misses by exactly the error the search compared (the bias refitted to the
    rounded weights, then rounded)."""
    x = rgb_to_ycbcr(load_image(RGB, 1 << 20))[:, :1]  # 64 x 64: no padding
    collage = GridCollage(ImageTiles(range_size=8, levels=1, domain_size=16, domain_stride=8), AveragePooler(), [], contraction=0.9,
                          mixing="sparse", sources=1)  # fmt: skip
    quantiser = Quantiser(0.9 / 7, 2.0 / 255)
    found = search_tree(collage, x, quantiser)
    rate = RateModel(torch.full((15,), 3.0), (6.0,), 6.0)
    params = found.cut(lmbda=2e-3, rate=rate)
    w = params.weight * 0.9
    assert torch.allclose(w / quantiser.weight_step, (w / quantiser.weight_step).round(), atol=1e-4)
    assert torch.allclose(params.bias / quantiser.bias_step, (params.bias / quantiser.bias_step).round(), atol=1e-3)
    _, choice = _cut_rd(found.codes, 4, 2e-3, rate, quantiser)
    searched = found.codes[0].error.gather(1, choice[0][:, None]).sum()
    step, _ = collage.step_and_start(params, 1, (64, 64))
    assert float(((step(x) - x) ** 2).sum()) == pytest.approx(float(searched), rel=1e-3)
    assert (choice[0] == 1).any() and (choice[0] == 0).any()  # flat and named leaves both occur on a real image


def test_with_two_sources_a_leaf_may_keep_one() -> None:
    """Candidates with 2 and 1 sources and none; the cut takes one source where a second does not pay."""
    x = rgb_to_ycbcr(load_image(RGB, 1 << 20))[:, :1]
    collage = GridCollage(ImageTiles(range_size=8, levels=1, domain_size=16, domain_stride=8), AveragePooler(), [], contraction=0.9,
                          mixing="sparse", sources=2)  # fmt: skip
    found = search_tree(collage, x, Quantiser(0.9 / 7, 2.0 / 255))
    codes = found.codes[0]
    assert codes.weight.shape[1:] == (3, 2) and (codes.weight[:, 1, 1] == 0).all() and (codes.weight[:, 2] == 0).all()
    assert (codes.index[:, 1, 0] == codes.index[:, 0, 0]).all()  # the one-source code keeps the first pick
    _, choice = _cut_rd(found.codes, 4, 1e-3, RateModel(torch.full((15,), 3.0), (8.0,), 6.0), found.quantiser)
    assert set(choice[0].tolist()) >= {0, 1}


def test_pruned_search_skips_only_subtrees_the_cut_cannot_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three levels on a real image: the pruned tree holds the full tree's codes wherever it searched,
    leaves unsearched exactly the subtrees under cells whose best code errs by at most ``prune``, and
    where ``prune`` is below what four children must cost (each leaf at least its cheapest code's bits,
    the parent at most its dearest), its rate-distortion cut is the full tree's."""
    x = rgb_to_ycbcr(load_image(RGB, 1 << 20))[:, :1]
    collage = GridCollage(ImageTiles(range_size=16, levels=3, domain_size=32, domain_stride=8), AveragePooler(), [], contraction=0.9,
                          mixing="sparse", sources=1)  # fmt: skip
    quantiser = Quantiser(0.9 / 7, 2.0 / 255)
    rate = RateModel(torch.full((15,), 2.0), (6.0, 8.0, 10.0), 5.0)
    full = search_tree(collage, x, quantiser)
    for lmbda in (3e-4, 3e-3):
        bits = 4 * (2.0 + 5.0) - (2.0 + 10.0 + 5.0)  # four children's least rate minus a leaf's greatest
        pruned = search_tree(collage, x, quantiser, prune=lmbda * bits)
        searched = torch.ones(full.codes[0].error.shape[0], dtype=torch.bool)
        for level, (whole, part) in enumerate(zip(full.codes, pruned.codes)):
            assert torch.equal(part.error[searched], whole.error[searched]) and torch.equal(part.index[searched], whole.index[searched])
            assert torch.isinf(part.error[~searched]).all()
            searched = (searched & (whole.error.min(-1).values > lmbda * bits)).repeat_interleave(4)
        assert torch.isinf(pruned.codes[-1].error).any() and not torch.isinf(pruned.codes[-1].error).all()
        expected, got = full.cut(lmbda=lmbda, rate=rate), pruned.cut(lmbda=lmbda, rate=rate)
        assert all(torch.equal(a, b) for a, b in zip(expected.split, got.split))
        assert torch.equal(expected.index, got.index) and torch.equal(expected.weight, got.weight) and torch.equal(expected.bias, got.bias)
    with pytest.raises(CollagekitError, match="lmbda only"):
        pruned.cut(ranges=40)
    # Pruned everywhere below the top: only the top cells are searched (no other level's sources are even
    # pooled), and the cut keeps them all.
    pooled: list[int] = []
    level_candidates = search_module.sparse.level_candidates
    monkeypatch.setattr(search_module.sparse, "level_candidates", lambda *a: pooled.append(a[3]) or level_candidates(*a))
    top_only = search_tree(collage, x, quantiser, prune=float("inf"))
    assert pooled == [0]
    assert all(torch.isinf(codes.error).all() for codes in top_only.codes[1:])
    code = top_only.cut(lmbda=3e-3, rate=rate)
    assert not any(bool(s.any()) for s in code.split) and code.bias.shape[0] == full.codes[0].error.shape[0]


def test_quantiser_keeps_several_sources_inside_the_ball() -> None:
    q = Quantiser(0.3, 0.1)
    w = torch.tensor([[0.44, 0.44], [0.2, -0.1], [-0.89, 0.0]])
    rounded = q.weights(w, 0.9)
    assert (rounded.abs().sum(-1) <= 0.9 + 1e-6).all()
    assert torch.allclose(rounded, torch.tensor([[0.3, 0.3], [0.3, 0.0], [-0.9, 0.0]]))


# ---------------------------------------------------------------- the codec
def test_cli_round_trip_and_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "k.clg"
    made = invoke("compress", str(RGB), "--method", "sparse-collage", "--quality", "70", "-o", str(out), *[part for k, v in SMALL.items() for part in ("-O", f"{k}={v}")])
    assert made.returncode == 0, made.stderr
    assert read_container(out).header["codec"] == "sparse-collage"
    result = invoke("decompress", str(out), "-o", str(tmp_path / "k.png"))
    assert result.returncode == 0, result.stderr
    x = load_image(RGB, 1 << 20)
    y = load_image(tmp_path / "k.png", 1 << 20)
    assert y.shape == x.shape and psnr(x, y) > 27.0  # a broken coder (wrong indices, weights or biases) lands far below
    result = invoke("decompress", str(out), "-o", str(tmp_path / "k2.png"), "--scale", "2")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "k2.png") as image:
        assert image.size == (128, 128) and image.mode == "RGB"
    # Memory is estimated before decoding: above the limit, one line and no output.
    monkeypatch.setenv("COLLAGEKIT_MAX_MEMORY", "64M")
    limited = invoke("decompress", str(out), "-o", str(tmp_path / "k8.png"), "--scale", "8")
    assert limited.returncode == 1 and limited.stderr.strip().startswith("error: ") and len(limited.stderr.strip().splitlines()) == 1
    assert "COLLAGEKIT_MAX_MEMORY" in limited.stderr and not (tmp_path / "k8.png").exists()


def test_grey_round_trip_and_rate_knob() -> None:
    x = load_image(GREY, 1 << 20)  # 48 x 40: padded to whole top cells
    sizes, quality = [], []
    for lmbda in (20.0, 200.0, 2000.0):
        container = _encode(GREY, lmbda=lmbda)
        y = _decode(container)
        assert y.shape == x.shape
        sizes.append(len(to_bytes(container)))
        quality.append(psnr(x, y))
    assert sizes[0] > sizes[1] > sizes[2] and quality[0] > quality[1] > quality[2]
    assert quality[0] > 30.0


def test_decoding_runs_no_search(monkeypatch: pytest.MonkeyPatch) -> None:
    container = _encode(RGB, lmbda=100.0, deblock=True)
    import collagekit_image.sparsecodec as codec_module

    def refuse(*args, **kwargs):
        raise AssertionError("decoding searched")

    monkeypatch.setattr(search_module, "search_level", refuse)
    monkeypatch.setattr(codec_module, "search_tree", refuse)
    assert psnr(load_image(RGB, 1 << 20), _decode(container)) > 25.0


def test_the_deblocking_fit_decodes_to_its_own_tolerance(monkeypatch: pytest.MonkeyPatch) -> None:
    """A looser decode before the fit: fewer iterations, the same strengths within one 1/64 step."""
    import collagekit_image.sparsecodec as codec_module

    iterations: list[int] = []

    def counted(*args, **kwargs):
        z, stats = solve_grid(*args, **kwargs)
        iterations.append(stats.iterations)
        return z, stats

    monkeypatch.setattr(codec_module, "solve_grid", counted)
    strengths, work = {}, {}
    for tol in (1e-6, 1e-2):
        iterations.clear()
        container = _encode(RGB, lmbda=100.0, deblock_tol=tol)
        layout, info = read_header(container)
        strengths[tol] = unpack_streams(bytes(container.tensors["streams"].numpy()), layout, info["shapes"], 3)[1]
        work[tol] = sum(iterations)
    assert work[1e-2] < work[1e-6]
    assert strengths[1e-6] is not None and any(any(s) for s in strengths[1e-6])
    assert all(abs(a - b) <= 1 for tight, loose in zip(strengths[1e-6], strengths[1e-2]) for a, b in zip(tight, loose))


def _tampered(container: Container, **changes) -> Container:
    return Container({**container.header, **changes}, dict(container.tensors))


def test_bad_files_give_one_line_errors(tmp_path: Path) -> None:
    good = _encode(RGB, lmbda=100.0)
    streams = good.tensors["streams"]
    flipped = streams.clone()
    flipped[len(flipped) // 2] ^= 0x21
    collage = good.header["collage"]
    cases = {
        "truncated streams": Container(good.header, {"streams": streams[:-9]}),
        "flipped byte": Container(good.header, {"streams": flipped}),
        "other size": _tampered(good, image={"channels": 3, "spatial": [64, 96]}),
        "huge size": _tampered(good, image={"channels": 3, "spatial": [1 << 20, 1 << 20]}),
        "two channels": _tampered(good, image={"channels": 2, "spatial": [64, 64]}),
        "grey header": _tampered(good, image={"channels": 1, "spatial": [64, 64]}),
        "other layout": _tampered(good, collage={**collage, "levels": 2}),
        "odd range size": _tampered(good, collage={**collage, "range_size": 12}),
        "no contraction": _tampered(good, collage={**collage, "contraction": 1.5}),
        "missing key": _tampered(good, collage={k: v for k, v in collage.items() if k != "bias_step"}),
        "bad chroma": _tampered(good, chroma="quarter"),
        "bad solver": _tampered(good, solver={"tol": -1.0, "max_iter": 5}),
        "bad deblock": _tampered(good, deblock=[[1, 2, 3]] * 3),
        "missing image": Container({k: v for k, v in good.header.items() if k != "image"}, dict(good.tensors)),
        "float tensor": Container(good.header, {"streams": streams.float()}),
        "extra tensor": Container(good.header, {"streams": streams, "x": torch.zeros(2)}),
    }
    for name, container in cases.items():
        with pytest.raises(CollagekitError) as info:
            _decode(container)
        message = str(info.value)
        assert "\n" not in message and "corrupt" in message, (name, message)
    path = tmp_path / "x.clg"
    write_container(path, good)
    data = path.read_bytes()
    (tmp_path / "cut.clg").write_bytes(data[: len(data) - 20])
    result = invoke("decompress", str(tmp_path / "cut.clg"), "-o", str(tmp_path / "cut.png"))
    assert result.returncode == 1 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_streams_are_checked_against_the_layout() -> None:
    good = _encode(RGB, lmbda=100.0)
    data = bytes(good.tensors["streams"].numpy())
    layout = Layout(**{k: good.header["collage"][k] for k in COLLAGE_KEYS})
    # The same bytes read as a grey image's: the streams do not match the layout.
    with pytest.raises(CollagekitError, match="corrupt"):
        unpack_streams(data, layout, {"y": (1, (64, 64))}, 1)


def test_default_settings_are_a_preset_and_strengths_travel_in_the_streams() -> None:
    """The defaults cost a preset number, not ~300 bytes of spelled-out settings; a file with the
    strengths in its header (as written before) decodes to the same image; contradictions are refused."""
    x = load_image(RGB, 1 << 20)
    codec = SparseCollageCodec()
    preset = codec.encode(x, None, quality=None, device=CPU, options={"lmbda": 100.0})
    assert preset.header["preset"] == 1 and not {"collage", "chroma", "solver", "deblock"} & set(preset.header)
    spelled = codec.encode(x, None, quality=None, device=CPU, options={"lmbda": 100.0, "bias_step": 3.0})
    assert "preset" not in spelled.header and spelled.header["collage"]["bias_step"] == 3.0
    overhead = [len(to_bytes(c)) - c.tensors["streams"].numel() for c in (preset, spelled)]
    assert overhead[0] + 180 < overhead[1], overhead
    # The old form: settings spelled out, strengths in the header, no strengths stream.
    layout, info = read_header(preset)
    priors = priors_of_file(preset.header["prior"], info["settings"])
    codes, strengths = unpack_streams(bytes(preset.tensors["streams"].numpy()), layout, info["shapes"], 3, priors)
    assert strengths is not None and any(any(s) for s in strengths)
    old_streams = pack_streams(codes, layout, info["shapes"])  # and without the stream priors
    old = Container({**{k: v for k, v in preset.header.items() if k not in ("preset", "prior")}, **PRESETS[1], "deblock": strengths}, {"streams": as_tensor(old_streams)})
    assert torch.equal(_decode(old), _decode(preset))
    for name, container in {
        "strengths twice": Container(old.header, dict(preset.tensors)),
        "preset and settings": _tampered(preset, collage=PRESETS[1]["collage"]),
        "unknown preset": _tampered(preset, preset=7),
        "boolean preset": _tampered(preset, preset=True),
    }.items():
        with pytest.raises(CollagekitError) as info:
            _decode(container)
        assert "\n" not in str(info.value) and "corrupt" in str(info.value), (name, str(info.value))


def test_default_files_are_coded_with_the_shipped_priors_nearest_their_lmbda() -> None:
    """The default settings code their streams from the shipped priors of the nearest rate point, named
    by number: fewer bytes than the same codes without them, decoding to the same image. Other settings
    get no priors by default, and priors for other settings are refused."""
    x = load_image(RGB, 1 << 20)
    codec = SparseCollageCodec()
    assert sorted(SHIPPED_PRIORS) == list(range(1, 9)) and len({lmbda for _, lmbda, _ in SHIPPED_PRIORS.values()}) == 8
    for lmbda, name in ((150.0, "sc-l160"), (5000.0, "sc-l6400"), (30.0, "sc-l24"), (5.0, "sc-l10")):
        coded = codec.encode(x, None, quality=None, device=CPU, options={"lmbda": lmbda})
        assert SHIPPED_PRIORS[coded.header["prior"]][0] == name
        assert "prior" not in codec.encode(x, None, quality=None, device=CPU, options={"lmbda": lmbda, "prior": "none"}).header
        # The same codes without the priors: more bytes, the same image.
        layout, info = read_header(coded)
        priors = priors_of_file(coded.header["prior"], info["settings"])
        codes, strengths = unpack_streams(bytes(coded.tensors["streams"].numpy()), layout, info["shapes"], 3, priors)
        plain = Container({k: v for k, v in coded.header.items() if k != "prior"}, {"streams": as_tensor(pack_streams(codes, layout, info["shapes"], strengths))})
        assert coded.tensors["streams"].numel() < plain.tensors["streams"].numel()
        assert torch.equal(_decode(coded), _decode(plain))
        named = codec.encode(x, None, quality=None, device=CPU, options={"lmbda": lmbda, "prior": name})
        assert named.header["prior"] == coded.header["prior"] and torch.equal(named.tensors["streams"], coded.tensors["streams"])
    assert "prior" not in _encode(RGB, lmbda=150.0).header  # SMALL: not the settings the shipped priors model
    with pytest.raises(CollagekitError, match="model the streams of other settings"):
        _encode(RGB, lmbda=150.0, prior="sc-l160")
    with pytest.raises(CollagekitError, match="unknown set of stream priors 'sc-l7'"):
        codec.encode(x, None, quality=None, device=CPU, options={"prior": "sc-l7"})
    coded = codec.encode(x, None, quality=None, device=CPU, options={"lmbda": 150.0})
    for name, container in {
        "unknown number": _tampered(coded, prior=99),
        "malformed": _tampered(coded, prior="sc-l160"),
        "other weights": _tampered(coded, prior={"name": "sc-l160", "version": "1", "sha256": "0" * 16}),
        "none at all": Container({k: v for k, v in coded.header.items() if k != "prior"}, dict(coded.tensors)),
    }.items():
        with pytest.raises(CollagekitError) as info:
            _decode(container)
        assert "\n" not in str(info.value), name
        assert any(word in str(info.value) for word in ("corrupt", "weights")), (name, str(info.value))


def test_codes_as_stored_are_what_the_streams_give_back() -> None:
    """The encoder fits the deblocking filter on :func:`as_stored` codes instead of coding and decoding
    the streams: they must be the very codes a decoder reads, with and without priors."""
    opts = SparseCollageEncodeOptions(lmbda=60.0)
    layout = Layout(**{k: getattr(opts, k) for k in COLLAGE_KEYS})
    codes, shapes, _ = search_codes(rgb_to_ycbcr(load_image(RGB, 1 << 20)), layout, opts, 60.0, contexts=True)
    priors, _ = stream_priors("auto", 60.0, PRESETS[1])
    for prior in (None, priors):
        read, _ = unpack_streams(pack_streams(codes, layout, shapes, None, prior), layout, shapes, 3, prior)
        for g, params in codes.items():
            stored = as_stored(params, layout, *shapes[g])
            for key in ("index", "weight", "bias"):
                assert torch.equal(getattr(stored, key), getattr(read[g], key)), (g, key)
            assert all(torch.equal(a, b) for a, b in zip(stored.split, read[g].split, strict=True))


def test_bad_options_give_clear_errors() -> None:
    x = load_image(GREY, 1 << 20)
    codec = SparseCollageCodec()
    for options, match in [
        ({"range_size": 12}, "power of two"),
        ({"range_size": 4, "levels": 3}, "power of two"),
        ({"contraction": 1.0}, "option contraction"),
        ({"chroma": "quarter"}, "option chroma"),
        ({"speed": 3}, "does not take the option"),
        ({"search": "exhaustive", "probes": 2}, "every source is compared"),
        ({"search": "exhaustive", "shortlist": "other"}, "every source is compared"),
    ]:
        with pytest.raises(CollagekitError, match=match):
            codec.encode(x, None, quality=None, device=CPU, options=options)
    with pytest.raises(CollagekitError, match="quality"):
        codec.encode(x, None, quality=101, device=CPU, options={})
    with pytest.raises(CollagekitError, match="grey or RGB"):
        codec.encode(torch.rand(1, 2, 16, 16), None, quality=None, device=CPU, options={})
    with pytest.raises(CollagekitError, match="too small for range_size 16"):
        codec.encode(torch.rand(1, 3, 20, 20), None, quality=None, device=CPU, options={})
