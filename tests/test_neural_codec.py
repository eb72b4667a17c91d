"""The Neural Collage image codec: model geometry, training objective, the neural-collage codec's
files (round trip, any size, any scale), bad input, the CLI, recipes and the Kodak benchmark.

A small randomly initialised model (written like a trained one) keeps these fast; the shipped
models are exercised through the CLI's defaults.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from collagekit.codec import as_tensor, encode_latent_groups
from collagekit.container import Container, from_bytes, read_container, to_bytes
from collagekit.errors import CollagekitError
from collagekit.training import TrainingConfig, save_weights, train
from collagekit_image.imageio import load_image
from collagekit_image.pretrained import MODEL_FORMAT, STORE
from collagekit_image.ncodec import NeuralCollageCodec, _grids, _groups, _key, decode_latents, encode_latents, read_code
from collagekit_image.neural import Layout, ModelConfig, NeuralCollageModel, PlaneConfig, from_tiles, pad_image, to_tiles
from collagekit_image.train import CropStream, RateDistortion
from conftest import DATA, invoke

SMALL = ModelConfig(
    luma=PlaneConfig(tile=16, range_size=4, domain_size=8, domain_stride=4, patches=4, width=8),
    chroma=PlaneConfig(tile=16, range_size=4, domain_size=8, domain_stride=4, patches=4, width=8),
    max_symbol=63,
)


def _lively_model(cfg: ModelConfig = SMALL, seed: int = 0) -> NeuralCollageModel:
    """A random model whose codes are not all zero (as a fresh one's round to): larger output weights."""
    torch.manual_seed(seed)
    model = NeuralCollageModel(cfg)
    with torch.no_grad():
        for plane in (model.luma, model.chroma):
            plane.encoder.head[-1].weight.mul_(5.0)
    return model


def _write_model(path: Path, cfg: ModelConfig = SMALL, seed: int = 0, name: str = "tiny") -> Path:
    model = _lively_model(cfg, seed)
    save_weights(model, path, {"format": MODEL_FORMAT, "name": name, "version": "7", "config": cfg.model_dump_json()})
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return _write_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return load_image(DATA / "kodim05_64.png", 1 << 20)  # (1 3 64 64)


CODEC = NeuralCollageCodec()
CPU = torch.device("cpu")


def _encode(x: torch.Tensor, model: Path, **options) -> bytes:
    return to_bytes(CODEC.encode(x, None, quality=None, device=CPU, options={"model": str(model), **options}))


def _decode(data: bytes, model: Path, scale: int = 1) -> torch.Tensor:
    return CODEC.decode(from_bytes(data), None, scale=scale, device=CPU, options={"model": str(model)})


# ---------------------------------------------------------------- model geometry
def test_tiles_round_trip_and_layout_pads_never_crops() -> None:
    x = torch.rand(2, 1, 48, 32)
    assert torch.equal(from_tiles(to_tiles(x, 16), 2, (3, 2)), x)
    layout = Layout.of((37, 50), SMALL)  # luma tiles 16, chroma tiles 16 at half resolution -> unit 32
    assert layout.padded == (64, 64) and layout.luma_grid == (4, 4) and layout.chroma_grid == (2, 2)
    padded = pad_image(torch.rand(1, 3, 37, 50), layout)
    assert padded.shape == (1, 3, 64, 64)


def test_offsets_are_predicted_across_tiles_in_their_places() -> None:
    """The offsets' grid puts every tile's range cells back where they lie in the plane: a level that
    is a plane over the image's cell positions leaves no residual past the first row and column."""
    model = NeuralCollageModel(SMALL)
    layout = Layout.of((48, 80), SMALL)  # padded to 64 x 96: a 4 x 6 grid of 16 x 16 luma tiles of 4 x 4 cells
    y, x = torch.meshgrid(torch.arange(16), torch.arange(24), indexing="ij")
    level = (2 * y - 3 * x)[None, None]  # (1 1 16 24): one value per luma range cell
    block = to_tiles(level, 4).reshape(-1, 1, 16)  # tiles row-major, cells row-major inside each
    r = _grids(model, layout, 1)["lb"].residuals(block)
    plane = from_tiles(r.reshape(-1, 1, 4, 4), 1, layout.luma_grid)[0, 0]
    assert not plane[1:, 1:].any() and plane[0, 1:].eq(-3).all() and plane[1:, 0].eq(2).all()


def test_hypernetwork_gives_every_tile_its_parameters_in_one_pass() -> None:
    model = NeuralCollageModel(SMALL)
    luma, chroma = model.planes(torch.rand(2, 3, 32, 32))
    assert luma.shape == (8, 1, 16, 16) and chroma.shape == (4, 1, 16, 16)  # Cb and Cr tiles of both images
    y = model.luma.latents(luma)
    assert y.shape == (8, model.luma.channels, 16)  # 16 range cells of 4x4 per 16x16 tile
    params = model.luma.params(torch.round(y))
    shapes = model.luma.collage.param_shapes(1, (16, 16))
    assert params.scale.shape == (8, *shapes["scale"]) and params.aux.shape == (8, *shapes["aux"])
    # One tile's latents depend on that tile alone (tiles are independent collages).
    alone = model.luma.latents(luma[3:4])
    assert torch.allclose(alone, y[3:4], atol=1e-5)
    assert float(model.luma.collage.lipschitz_bound(params).detach().max()) < SMALL.luma.contraction


def test_rd_codes_pick_per_tile_between_rounding_and_no_domains_by_the_weighted_cost() -> None:
    """HyperCollage.rd_codes: every tile gets its rounded latents or those with the domain weights
    dropped; with distortion weighted heavily the one that decodes closer, with no weight the cheaper."""
    plane = _lively_model().luma
    tiles = to_tiles(torch.rand(1, 1, 64, 64) - 0.5, 16)
    m = SMALL.max_symbol
    rounded = torch.round(plane.latents(tiles)).clamp(-m, m)
    dropped = rounded.clone()
    dropped[:, : plane.sizes["scale"]] = 0
    assert not torch.equal(rounded, dropped)

    def error(q: torch.Tensor) -> torch.Tensor:
        return ((plane.decode(q) - tiles) ** 2).flatten(1).sum(1)

    accurate = plane.rd_codes(tiles, torch.full((16,), 1e9), m)
    closer = torch.where((error(rounded) <= error(dropped))[:, None, None], rounded, dropped)
    assert torch.equal(accurate, closer)
    cheap = plane.rd_codes(tiles, torch.zeros(16), m)
    assert torch.equal(cheap, dropped)  # no domain weights: zeros cost less than any other value


def test_training_objective_reaches_every_learned_part_and_crops_are_deterministic(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    Image.open(DATA / "kodim05_64.png").save(folder / "photo_a.png")
    Image.open(DATA / "kodim15_grey_48x40.png").convert("RGB").resize((64, 80)).save(folder / "photo_b.png")
    stream = CropStream(folder, 32, 3, seed=1)
    assert torch.equal(stream(5, 0, 2), stream(5, 0, 2))
    assert not torch.equal(stream(5, 0, 2), stream(5, 1, 2))
    assert stream(0, 0, 1).shape == (3, 3, 32, 32)

    model = _lively_model()
    objective = RateDistortion(model, lmbda=0.01, quantiser="noise", tol=1e-3, max_iter=20)
    loss, metrics = objective(stream(0, 0, 1))
    loss.backward()
    for part in (model.luma.encoder, model.chroma.encoder, model.luma.collage, model.luma.prior):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads), part
    assert model.luma.log_gain.grad.abs().sum() > 0
    assert float(metrics["bpp"]) > 0

    config = TrainingConfig(steps=4, batch_size=2, lr=3e-3, log_every=2, checkpoint_every=2)
    result = train(RateDistortion(NeuralCollageModel(SMALL), 0.01, "ste", 1e-3, 20), stream, config, out_dir=tmp_path / "ck")
    assert result.steps == 4 and (tmp_path / "ck" / "checkpoint.safetensors").is_file()
    assert all(math.isfinite(h["loss"]) for h in result.history)


def test_crop_stream_refuses_kodak(tmp_path: Path) -> None:
    folder = tmp_path / "kodak"
    folder.mkdir()
    Image.open(DATA / "kodim05_64.png").save(folder / "kodim05.png")
    with pytest.raises(CollagekitError, match="evaluation set"):
        CropStream(folder, 32, 1, 0)


# ---------------------------------------------------------------- the codec
def test_file_decodes_on_its_own_to_the_codes_decoded_directly(tiny_model: Path, photo: torch.Tensor) -> None:
    data = _encode(photo, tiny_model)
    container = from_bytes(data)
    header = container.header
    assert header["codec"] == "neural-collage" and header["model"]["name"] == "tiny" and header["model"]["version"] == "7"
    assert header["image"] == {"channels": 3, "spatial": [64, 64]}
    decoded = _decode(data, tiny_model)
    assert decoded.shape == photo.shape and 0 <= float(decoded.min()) and float(decoded.max()) <= 1
    loaded = STORE.load(str(tiny_model))
    deblock = read_code(container, str(tiny_model))[2]["deblock"]
    direct = decode_latents(loaded.model, encode_latents(loaded.model, photo), 3, (64, 64), 1, CPU, deblock=deblock).clamp(0, 1)
    assert torch.allclose(decoded, direct, atol=1e-5)


def test_any_size_any_scale_and_grey(tiny_model: Path) -> None:
    odd = torch.rand(1, 3, 37, 50)
    data = _encode(odd, tiny_model)
    assert _decode(data, tiny_model).shape == (1, 3, 37, 50)
    assert _decode(data, tiny_model, scale=2).shape == (1, 3, 74, 100)
    grey = load_image(DATA / "kodim15_grey_48x40.png", 1 << 20)
    g = _decode(_encode(grey, tiny_model), tiny_model)
    assert g.shape == grey.shape
    assert "chroma" not in from_bytes(_encode(grey, tiny_model)).header["shapes"]


def test_bad_files_are_clear_errors(tiny_model: Path, photo: torch.Tensor, tmp_path: Path) -> None:
    data = _encode(photo, tiny_model)
    container = from_bytes(data)
    with pytest.raises(CollagekitError, match="does not exist"):
        CODEC.encode(photo, None, quality=None, device=CPU, options={"model": str(tmp_path / "none.safetensors")})
    with pytest.raises(CollagekitError, match="unknown Neural Collage model"):
        CODEC.encode(photo, None, quality=None, device=CPU, options={"model": "no-such-model"})
    with pytest.raises(CollagekitError, match="above the limit"):
        CODEC.encode(photo, None, quality=None, device=CPU, options={"model": str(tiny_model), "max_pixels": 1000})
    with pytest.raises(CollagekitError, match="does not take"):
        CODEC.encode(photo, None, quality=None, device=CPU, options={"model": str(tiny_model), "colour": "rgb"})
    # Other weights than the file was made with: refused, naming both.
    other = _write_model(tmp_path / "other.safetensors", seed=1, name="tiny")
    with pytest.raises(CollagekitError, match="was made with model 'tiny'"):
        _decode(data, other)
    # Tampered header: a different image size no longer fits the stored parameter shapes.
    tampered = from_bytes(data)
    tampered.header["image"]["spatial"] = [128, 64]
    with pytest.raises(CollagekitError, match="shapes"):
        CODEC.decode(tampered, None, scale=1, device=CPU, options={"model": str(tiny_model)})
    tampered = from_bytes(data)
    tampered.header["quantiser"]["max_symbol"] += 1
    with pytest.raises(CollagekitError, match="quantiser"):
        CODEC.decode(tampered, None, scale=1, device=CPU, options={"model": str(tiny_model)})
    tampered = from_bytes(data)
    tampered.header["split"] = ["luma.bias", "luma.aux"] if "luma.aux" not in tampered.header["split"] else []
    with pytest.raises(CollagekitError, match="streams"):
        CODEC.decode(tampered, None, scale=1, device=CPU, options={"model": str(tiny_model)})
    # A flipped byte in the entropy-coded payload fails its checksum.
    streams = container.tensors["streams"].clone()
    streams[len(streams) // 2] ^= 0x10
    container.tensors["streams"] = streams
    with pytest.raises(CollagekitError, match="checksum"):
        read_code(container, str(tiny_model))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_and_mutated_files_never_crash_the_decoder(tiny_model: Path, photo: torch.Tensor, data) -> None:
    original = _cached_file(tiny_model, photo)
    kind = data.draw(st.sampled_from(["random", "truncate", "flip", "splice"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=2048))
    elif kind == "truncate":
        blob = original[: data.draw(st.integers(0, len(original) - 1))]
    elif kind == "flip":
        i = data.draw(st.integers(0, len(original) - 1))
        blob = original[:i] + bytes([original[i] ^ data.draw(st.integers(1, 255))]) + original[i + 1 :]
    else:
        i = data.draw(st.integers(0, len(original)))
        blob = original[:i] + data.draw(st.binary(min_size=1, max_size=64)) + original[i:]
    try:
        z = _decode(blob, tiny_model)
    except CollagekitError:
        return
    # Mutations the checks cannot see (e.g. in a JSON string's spelling) must still decode sanely.
    assert z.shape[0] == 1 and torch.isfinite(z).all()


_FILES: dict[str, bytes] = {}


def _cached_file(model: Path, photo: torch.Tensor) -> bytes:
    if str(model) not in _FILES:
        _FILES[str(model)] = _encode(photo[..., :32, :32], model)
    return _FILES[str(model)]


# ---------------------------------------------------------------- CLI, recipes, benchmark
def test_cli_compress_batch_and_decompress_at_scale(tiny_model: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.open(DATA / "kodim05_64.png").save(a)
    Image.open(DATA / "kodim15_grey_48x40.png").save(b)
    out = tmp_path / "codes"
    result = invoke("compress", str(a), str(b), "-o", str(out), "--model", str(tiny_model))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.clg", "b.clg"]
    assert read_container(out / "a.clg").header["codec"] == "neural-collage"
    result = invoke("decompress", str(out / "b.clg"), "-o", str(tmp_path / "b2.png"), "--scale", "2", f"model={tiny_model}")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "b2.png").size == (96, 80)


def test_cli_bad_inputs_leave_no_output(tiny_model: Path, tmp_path: Path) -> None:
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not a picture")
    result = invoke("compress", str(not_image), "-o", str(tmp_path / "n.clg"), "--model", str(tiny_model))
    assert result.returncode == 1 and result.stderr.startswith("error:") and "Traceback" not in result.stderr
    result = invoke("compress", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "m.clg"), "--model", "nope")
    assert result.returncode == 1 and "unknown Neural Collage model 'nope'" in result.stderr
    result = invoke("compress", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "l.clg"), "--model", str(tiny_model), "-O", "max_pixels=100")
    assert result.returncode == 1 and "above the limit of 100" in result.stderr
    good = tmp_path / "good.clg"
    assert invoke("compress", str(DATA / "kodim05_64.png"), "-o", str(good), "--model", str(tiny_model)).returncode == 0
    (tmp_path / "cut.clg").write_bytes(good.read_bytes()[:-40])
    result = invoke("decompress", str(tmp_path / "cut.clg"), "-o", str(tmp_path / "cut.png"), f"model={tiny_model}")
    assert result.returncode == 1 and result.stderr.startswith("error:") and "\n" == result.stderr[-1] and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.clg", "good.clg", "notes.png"]


@pytest.mark.skipif(not STORE.shipped(), reason="no shipped model")
def test_shipped_models_compress_by_default(tmp_path: Path) -> None:
    out = tmp_path / "x.clg"
    result = invoke("compress", str(DATA / "kodim05_64.png"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    header = read_container(out).header
    assert header["codec"] == "neural-collage" and header["model"]["name"] in STORE.shipped()
    assert set(header["created_by"]) == {"core", "image"}  # the makers only, not every installed plugin
    result = invoke("compress", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "y.clg"), "--quality", "99")
    assert result.returncode == 1 and "no shipped model for quality 99" in result.stderr
    assert not (tmp_path / "y.clg").exists()


@pytest.mark.skipif("nc-q1" not in STORE.shipped(), reason="no shipped model")
def test_offsets_are_predicted_and_files_without_prediction_still_decode() -> None:
    """A trained model's range offsets follow the image's level: coded as residuals of their
    neighbours' prediction the file shrinks; a file written before prediction (values coded as they
    are, no "predicted" field) decodes to the same image, and a header that lies about it is refused."""
    # 256 x 256 (the crop enlarged): on 64 x 64 the residual tables cost more than they save.
    x = torch.nn.functional.interpolate(load_image(DATA / "kodim05_64.png", 1 << 20), scale_factor=4, mode="bicubic").clamp(0, 1)
    options = {"model": "nc-q1"}
    container = CODEC.encode(x, None, quality=None, device=CPU, options=options)
    assert set(container.header["predicted"]) <= {"luma.bias", "chroma.bias"} and container.header["predicted"]
    loaded, q, _ = read_code(container)
    groups = {_key(plane, kind): q[plane][:, sl, :] for plane, kind, sl in _groups(loaded.model, 3)}
    plain, split, _ = encode_latent_groups(groups, loaded.model.cfg.max_symbol)
    old = Container({k: v for k, v in container.header.items() if k not in ("predicted", "split")}, {"streams": as_tensor(plain)})
    old.header["split"] = [f"{plane}.{kind}" for plane, kind, _ in _groups(loaded.model, 3) if _key(plane, kind) in split]
    assert len(plain) > container.tensors["streams"].numel()
    new_image = CODEC.decode(container, None, scale=1, device=CPU, options={})
    assert torch.equal(CODEC.decode(old, None, scale=1, device=CPU, options={}), new_image)
    for lie in ([], ["luma.bias", "luma.bias"], ["luma.nothing"]):
        container.header["predicted"] = lie
        with pytest.raises(CollagekitError, match="streams|predicted"):
            CODEC.decode(container, None, scale=1, device=CPU, options={})


@pytest.mark.skipif("nc-q2" not in STORE.shipped(), reason="no shipped model")
def test_rate_distortion_optimised_codes_lower_the_models_objective() -> None:
    """By default the encoder picks each tile's code by the model's own objective (lmbda * 255^2 *
    MSE + bpp, lmbda from the model file); on a real image that objective, measured on the decoded
    file, is lower than with plainly rounded latents, and rdo=false gives exactly the rounded ones."""
    x = torch.nn.functional.interpolate(load_image(DATA / "kodim05_64.png", 1 << 20), scale_factor=4, mode="bicubic").clamp(0, 1)
    loaded = STORE.load("nc-q2")
    lmbda = float(loaded.metadata["lmbda"])

    def objective(rdo: bool) -> tuple[float, dict[str, torch.Tensor]]:
        container = CODEC.encode(x, None, quality=None, device=CPU, options={"model": "nc-q2", "rdo": rdo})
        y = (CODEC.decode(container, None, scale=1, device=CPU, options={}) * 255).round() / 255
        bpp = len(to_bytes(container)) * 8 / (256 * 256)
        return lmbda * 255**2 * float(torch.mean((y - x) ** 2)) + bpp, read_code(container)[1]

    optimised, codes = objective(True)
    plain, rounded = objective(False)
    assert optimised < plain
    direct = encode_latents(loaded.model, x)
    assert all(torch.equal(rounded[name], direct[name].long()) for name in direct)
    assert any(not torch.equal(codes[name], rounded[name]) for name in codes)
    with pytest.raises(CollagekitError, match="option rdo: Input should be a valid boolean"):
        CODEC.encode(x, None, quality=None, device=CPU, options={"model": "nc-q2", "rdo": "maybe"})


@pytest.mark.skipif("nc-q2" not in STORE.shipped(), reason="no shipped model")
def test_the_fitted_deblocking_filter_raises_psnr_and_is_checked_on_reading() -> None:
    x = torch.nn.functional.interpolate(load_image(DATA / "kodim05_64.png", 1 << 20), scale_factor=4, mode="bicubic").clamp(0, 1)

    def coded(deblock: bool) -> tuple[Container, float]:
        container = CODEC.encode(x, None, quality=None, device=CPU, options={"model": "nc-q2", "deblock": deblock})
        y = (CODEC.decode(from_bytes(to_bytes(container)), None, scale=1, device=CPU, options={}) * 255).round() / 255
        return container, -10 * math.log10(float(torch.mean((y - x) ** 2)))

    filtered, psnr_on = coded(True)
    plain, psnr_off = coded(False)
    assert "deblock" not in plain.header and len(filtered.header["deblock"]) == 3
    assert psnr_on > psnr_off + 0.1
    assert CODEC.decode(filtered, None, scale=3, device=CPU, options={}).shape == (1, 3, 768, 768)
    for bad in ([[0] * 6] * 2, [[0] * 6, [0] * 6, [0, 0, 0, 0, 0, 99]], "strong"):
        filtered.header["deblock"] = bad
        with pytest.raises(CollagekitError, match="deblocking strengths"):
            CODEC.decode(filtered, None, scale=1, device=CPU, options={})


def test_compress_recipe_writes_compressai_metrics(tiny_model: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "m.json"
    result = invoke("run", "image_compress", f"input={DATA / 'kodim05_64.png'}", f"model={tiny_model}",
                    f"output={tmp_path / 'r.png'}", f"code={tmp_path / 'r.clg'}", f"metrics={metrics}", "scale=2")
    assert result.returncode == 0, result.stderr
    saved = json.loads(metrics.read_text())
    assert set(saved["results"]) == {"psnr-rgb", "bpp", "encoding_time", "decoding_time"}
    assert saved["results"]["bpp"][0] == pytest.approx((tmp_path / "r.clg").stat().st_size * 8 / 64**2, abs=1e-3)
    assert Image.open(tmp_path / "r.png").size == (128, 128)


def test_kodak_bench_writes_results(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "kodak"
    data.mkdir()
    Image.open(DATA / "kodim05_64.png").save(data / "kodim05.png")
    result = invoke("bench", "kodak", "--data", str(data), "--out", str(tmp_path / "res"), f"models={tiny_model}", "anchors=jpeg", "pifs=false")
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "res" / "kodak.json").read_text())
    row = saved["images"][0]["neural"][str(tiny_model)]
    assert row["bpp"] > 0 and np.isfinite(row["psnr_db"])
    assert "jpeg" in saved["tables"]["bd"] and (tmp_path / "res" / "kodak.md").is_file()


def test_prior_prices_unit_bins_of_a_laplace() -> None:
    from collagekit.prior import LaplacePrior

    prior = LaplacePrior(2)
    with torch.no_grad():
        prior.log_scale.copy_(torch.tensor([0.0, math.log(0.3)]) / prior.SPEED)
        prior.loc.copy_(torch.tensor([0.0, 1.0]) / prior.SPEED)

    def cdf(x: float, b: float) -> float:
        return 0.5 * math.exp(x / b) if x < 0 else 1 - 0.5 * math.exp(-x / b)

    y = torch.tensor([[0.0, 0.3, -2.0, 4.0], [1.0, 1.4, 0.0, 3.0]])[None]
    bits = prior.bits(y).detach()[0]
    for j, (b, mu) in enumerate([(1.0, 0.0), (0.3, 1.0)]):
        for i, v in enumerate(y[0, j].tolist()):
            assert float(bits[j, i]) == pytest.approx(-math.log2(cdf(v - mu + 0.5, b) - cdf(v - mu - 0.5, b)), rel=1e-4)
    ints = torch.arange(-40, 41).float().expand(1, 2, -1)
    assert torch.allclose((2 ** -prior.bits(ints).detach()).sum(-1), torch.ones(1, 2), atol=1e-5)
