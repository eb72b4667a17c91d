"""The Collage VAE plugin: IDX reading and the train / validation / test split, the heads' shapes, a
decreasing ELBO, any-scale decoding, the training recipe end to end on a 32-image MNIST slice (cut 20 / 6 / 6),
the benchmark's choice of scored set, and the ``sample`` command."""

from __future__ import annotations

import gzip
import json
import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from collagekit_vae.config import VAEBenchOptions, VAEMnistConfig
from collagekit_vae.evaluate import evaluate
from collagekit_vae.heads import GaussianConv, GaussianResidual
from collagekit_vae.mnist import BatchStream, fixed_binarization, read_idx_images, split
from collagekit_vae.model import GRID, VAEConfig, VAEObjective, build_model
from collagekit_vae.store import FORMAT, load_model
from conftest import DATA, REPO, invoke
from PIL import Image

from collagekit.errors import CollagekitError
from collagekit.recipe import RecipeModels, load_recipe
from collagekit.registry import get_registry
from collagekit.training import TrainingConfig, save_weights, train

TINY = DATA / "mnist_tiny"
TINY_COUNTS = (20, 6)  # of its 32 images: 20 train, 6 validate, 6 test
TINY_OPTIONS = ("train_count=20", "validation_count=6")
SMALL = {"width": 4, "z_dim": 3, "conv_latent": 2}
HEADS = {"prior": {"name": "gaussian-conv", "hidden": 8}, "posterior": {"name": "gaussian-conv", "hidden": 8}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: extra threads only add synchronisation (and stall on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_model(decoder: str = "collage", **fields):
    registry = get_registry()
    config = RecipeModels(registry).specialize(VAEConfig).model_validate({"decoder": decoder, **SMALL, **HEADS, **fields})
    return build_model(config, registry)


# ---------------------------------------------------------------- data
def test_tiny_idx_slice_reads_and_splits_three_ways() -> None:
    images = read_idx_images(TINY / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (32, 28, 28) and images.dtype == torch.uint8
    parts = split(TINY, *TINY_COUNTS)
    assert [len(p) for p in parts] == [20, 6, 6]
    assert torch.equal(torch.cat(list(parts)), images)  # consecutive, in order, disjoint, nothing left out
    x = BatchStream(parts.train, 5, seed=0)(3, 0, 1)
    assert x.shape == (5, 1, 28, 28) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x, BatchStream(parts.train, 5, seed=0)(3, 0, 1))  # deterministic in (seed, step, rank)
    assert not torch.equal(x, BatchStream(parts.train, 5, seed=0)(3, 1, 2))


def test_the_default_cut_of_the_mnist_file_and_where_each_part_is_scored() -> None:
    """8,000 train, 1,000 validate, the last 1,000 test; a run scores validation unless told otherwise."""
    Config = RecipeModels(get_registry()).specialize(VAEMnistConfig)
    config = Config()
    assert (config.train_count, config.validation_count, config.split) == (8000, 1000, "validation")
    assert Config(split="test").split == "test"
    with pytest.raises(ValueError, match="split"):
        Config(split="train")
    options = VAEBenchOptions()
    assert (options.train_count, options.validation_count, options.split) == (8000, 1000, None)


@pytest.mark.parametrize("counts", [(26, 6), (20, 12), (0, 6), (20, 0)])
def test_a_split_that_leaves_a_part_empty_is_refused(counts: tuple[int, int]) -> None:
    with pytest.raises(CollagekitError, match="has 32 images: too few"):
        split(TINY, *counts)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (struct.pack(">IIII", 0x801, 1, 28, 28), "not an IDX image file"),
        (struct.pack(">IIII", 0x803, 4_000_000_000, 28, 28), "implausible shape"),
        (struct.pack(">IIII", 0x803, 2, 28, 28), "promises 1568"),
    ],
)
def test_bad_idx_files_are_refused(tmp_path: Path, header: bytes, message: str) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + bytes(784)))
    with pytest.raises(CollagekitError, match=message):
        read_idx_images(path)


# ---------------------------------------------------------------- model
@torch.no_grad()
def test_heads_and_collage_code_shapes() -> None:
    model = small_model()
    likelihood = model.likelihood
    shapes = likelihood.collage.param_shapes(1, (28, 28))  # 49 ranges, 36 domains of 8x8 at stride 4, 16 patches
    assert shapes["scale"] == (1, 49, 36) and shapes["aux"] == (1, 49, 16) and shapes["bias"] == (1, 49)
    assert likelihood.latent_channels == 2 * 36 + 16 + 1
    x = fixed_binarization(split(TINY, *TINY_COUNTS).validation)
    h = model.encoder(x)
    assert h.shape == (6, 8, *GRID)  # (n c gh gw): 6 validation images, 2 x width channels
    state = model.top_down(torch.randn(6, SMALL["z_dim"]))
    mean, sd = model.prior(state)
    assert mean.shape == sd.shape == (6, 89, *GRID) and bool((sd > 0).all())
    mean_q, _ = model.posterior(torch.cat([h, state], 1))
    params = likelihood.params(mean_q)
    for key, tensor in params.tensors().items():
        assert tuple(tensor.shape) == (6, *shapes[key]), key
    assert float(likelihood.collage.lipschitz_bound(params).max()) < 0.9


RESIDUAL = {"posterior": {"name": "gaussian-residual", "hidden": 8, "blocks": 1}}
NO_PATCHES = {"collage": {"partitioner": {"name": "tiles2d", "range_size": 4, "domain_size": 8, "domain_stride": 4}, "contraction": 0.9}}


@pytest.mark.parametrize(
    ("decoder", "fields"),
    [("collage", {}), ("conv", {}), ("collage", {**RESIDUAL, **NO_PATCHES}),
     ("collage", {"code_latent": 3, "residual_posterior": True})],
)  # fmt: skip
def test_elbo_is_finite_and_improves(decoder: str, fields: dict) -> None:
    torch.manual_seed(0)
    train_images, validation_images, _ = split(TINY, *TINY_COUNTS)
    model = small_model(decoder, **fields)
    x = fixed_binarization(validation_images)
    before = evaluate(model, x)
    assert all(np.isfinite(v) for v in before.values())
    config = TrainingConfig(steps=25, batch_size=8, lr=1e-2, lr_schedule="constant", log_every=5, checkpoint_every=1000)
    result = train(VAEObjective(model, beta=1.0), BatchStream(train_images, 8, seed=0), config)
    losses = [entry["loss"] for entry in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0]
    after = evaluate(model, x)
    assert after["elbo"] > before["elbo"] + 20  # nats per image, on held-out images
    assert after["rate"] >= 0 and after["distortion"] > 0


def test_kl_warmup_ramps_to_beta_and_survives_a_resume(tmp_path: Path) -> None:
    torch.manual_seed(0)
    train_images = split(TINY, *TINY_COUNTS).train
    objective = VAEObjective(small_model("conv"), beta=0.5, kl_warmup=4)
    assert objective.kl_weight() == pytest.approx(0.125)
    config = TrainingConfig(steps=2, batch_size=4, lr=1e-3, log_every=1, checkpoint_every=2)
    train(objective, BatchStream(train_images, 4, seed=0), config, out_dir=tmp_path)
    assert objective.kl_weight() == pytest.approx(0.375)
    resumed = VAEObjective(small_model("conv"), beta=0.5, kl_warmup=4)
    train(resumed, BatchStream(train_images, 4, seed=0), config.model_copy(update={"steps": 5}), out_dir=tmp_path)
    assert int(resumed.steps_taken) == 5 and resumed.kl_weight() == pytest.approx(0.5)
    with torch.no_grad():
        resumed.eval()(BatchStream(train_images, 4, seed=0)(0, 0, 1))
    assert int(resumed.steps_taken) == 5  # evaluation is not a training step


def test_collage_decodes_at_scale_two() -> None:
    torch.manual_seed(0)
    model = small_model().eval()
    w = model.sample_latent(3, torch.Generator().manual_seed(1))
    w[:, :73:2] += 2.0  # non-trivial weights so the fixed point is not just the bias blocks
    one, two = model.decode(w, 1), model.decode(w, 2)
    assert one.shape == (3, 1, 28, 28) and two.shape == (3, 1, 56, 56)
    assert bool(((two >= 0) & (two <= 1)).all())
    # The decode is the fixed point of the scale-2 collage, not an interpolation of the 1x image.
    likelihood = model.likelihood
    step = likelihood.collage.step_fn(likelihood.params(w), (28, 28), 2)
    logits = torch.logit(two.double().clamp(1e-12, 1 - 1e-12)).float()
    with torch.no_grad():  # the learned patches are parameters
        assert float((step(logits) - logits).abs().max()) < 1e-2
    coarse = torch.nn.functional.avg_pool2d(two, 2)
    assert float((coarse - one).abs().mean()) < 0.1  # same picture, finer


def test_residual_posterior_is_the_prior_until_its_head_moves() -> None:
    torch.manual_seed(0)
    x = fixed_binarization(split(TINY, *TINY_COUNTS).validation)
    free, residual = small_model(), small_model(residual_posterior=True)
    residual.load_state_dict(free.state_dict())  # the same weights: only the parametrisation differs
    with torch.no_grad():
        for model in (free, residual):  # a prior that is no longer the standard Gaussian; the posterior head stays at zero
            for param in model.prior.parameters():
                param.normal_(0, 0.3)
        assert float(free.terms(x)["kl_w"].min()) > 1.0  # a free posterior pays for not copying the prior
        assert float(residual.terms(x)["kl_w"].abs().max()) < 1e-4  # its zero output is the prior itself


@torch.no_grad()
def test_code_network_maps_a_small_latent_to_the_collage_code_at_any_scale() -> None:
    torch.manual_seed(0)
    model = small_model(code_latent=5).eval()
    assert model.likelihood.latent_channels == 5
    w = model.sample_latent(2, torch.Generator().manual_seed(1))
    assert w.shape == (2, 5, *GRID)
    params = model.likelihood.params(w)
    assert params.aux.shape == (2, 1, 49, 16) and params.scale.shape == (2, 1, 49, 36)
    # Each cell's code reads its 3 x 3 neighbourhood of latents: moving the centre latent moves only those.
    moved = w.clone()
    moved[:, :, 3, 3] += 1.0
    changed = (model.likelihood.params(moved).aux - params.aux).abs().sum((0, 1, 3)).reshape(GRID) > 0
    assert changed[2:5, 2:5].all() and int(changed.sum()) == 9
    assert model.decode(w, 1).shape == (2, 1, 28, 28) and model.decode(w, 3).shape == (2, 1, 84, 84)


def test_collage_must_tile_the_feature_grid() -> None:
    registry = get_registry()
    data = {"collage": {"partitioner": {"name": "tiles2d", "range_size": 7, "domain_size": 14}}}
    config = RecipeModels(registry).specialize(VAEConfig).model_validate(data)
    with pytest.raises(CollagekitError, match="needs a 7x7 grid of range cells"):
        build_model(config, registry)


def test_conv_baseline_refuses_other_scales() -> None:
    model = small_model("conv")
    with pytest.raises(CollagekitError, match="scale 1 only"):
        model.decode(torch.zeros(1, SMALL["conv_latent"], *GRID), 2)


# ---------------------------------------------------------------- heads: registry components
def test_heads_are_listed() -> None:
    result = invoke("list", "head")
    assert result.returncode == 0, result.stderr
    assert "gaussian-conv" in result.stdout and "gaussian-residual" in result.stdout and "tiles2d" not in result.stdout
    assert "hidden: int = 64, blocks: int = 2" in result.stdout and "vae" in result.stdout  # fields and the owning plugin
    plural = invoke("list", "heads")  # kinds are singular, like partitioner; the error says so
    assert plural.returncode == 1 and "did you mean 'head'" in plural.stderr


def _head(name: str, **fields):
    registry = get_registry()
    config = RecipeModels(registry).slot_union_adapter("head").validate_python({"name": name, **fields})
    return registry.build("head", config)


@pytest.mark.parametrize("name", ["gaussian-conv", "gaussian-residual"])
def test_heads_start_at_the_standard_gaussian_and_see_their_receptive_field(name: str) -> None:
    torch.manual_seed(0)
    head = _head(name, hidden=8)
    head.bind(6, 5)
    features = torch.randn(2, 6, *GRID, requires_grad=True)
    mean, sd = head(features)
    assert mean.shape == sd.shape == (2, 5, *GRID)
    assert bool((mean == 0).all()) and torch.allclose(sd, torch.full_like(sd, math.log(2) + 1e-4))
    with torch.no_grad():  # leave the zero start: give every layer weights
        for param in head.parameters():
            param.normal_(0, 0.3)
    mean, sd = head(features)
    assert bool((sd > 0).all()) and float(mean.detach().std()) > 0
    # The corner cell's mean reads cells two steps away only through the residual head's extra blocks.
    (grad,) = torch.autograd.grad(mean[:, :, 0, 0].sum(), features)
    reach = grad.abs().sum((0, 1)) > 0  # (gh gw): the input cells the corner cell depends on
    assert bool(reach[1, 1]) and bool(reach[2, 2]) == (name == "gaussian-residual")


def _recipe_with(tmp_path: Path, prior: str) -> Path:
    text = (REPO / "collagekit" / "recipes" / "vae_mnist.yaml").read_text()
    old = "  prior:                    # p(w | z): a head from `collagekit list head`\n    name: gaussian-conv\n    hidden: 64\n"
    assert old in text
    path = tmp_path / "vae.yaml"
    path.write_text(text.replace(old, f"  prior:\n{prior}"))
    return path


def test_recipe_selects_heads_by_name(tmp_path: Path) -> None:
    registry = get_registry()
    recipe = _recipe_with(tmp_path, "    name: gaussian-residual\n    hidden: 16\n    blocks: 3\n")
    config = load_recipe(recipe, registry).config.model
    assert (config.prior.name, config.prior.blocks, config.posterior.name) == ("gaussian-residual", 3, "gaussian-conv")
    model = build_model(config, registry)
    assert isinstance(model.prior, GaussianResidual) and len(model.prior.blocks) == 3
    assert isinstance(model.posterior, GaussianConv)
    # switching a head by override starts it from that head's defaults
    config = load_recipe(REPO / "collagekit" / "recipes" / "vae_mnist.yaml", registry, ["model.posterior.name=gaussian-residual"]).config.model
    assert config.posterior == GaussianResidual.Config()


@pytest.mark.parametrize(
    ("prior", "line", "message"),
    [
        ("    name: gaussian-cnv\n", 1, r"model\.prior\.name: unknown head 'gaussian-cnv'; choose from: gaussian-conv, "
                                      r"gaussian-residual \(did you mean 'gaussian-conv'\?\)"),
        ("    name: gaussian-conv\n    kernel: 2\n", 2, r"model\.prior\.kernel: .*must be odd"),
    ],
)
def test_bad_head_is_a_one_line_recipe_error(tmp_path: Path, prior: str, line: int, message: str) -> None:
    recipe = _recipe_with(tmp_path, prior)
    line += recipe.read_text().splitlines().index("  prior:") + 1  # 1-based line of the faulty key
    result = invoke("validate", str(recipe))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert re.match(rf"error: .*vae\.yaml:{line}: {message}", result.stderr), result.stderr


def test_checkpoint_from_before_heads_were_components_loads(tmp_path: Path) -> None:
    """Models saved with one ``head_hidden`` for both heads load as two gaussian-conv heads, same weights."""
    torch.manual_seed(0)
    model = small_model().eval()
    legacy = model.config.model_dump(mode="json", exclude={"prior", "posterior"}) | {"head_hidden": 8}
    save_weights(model, tmp_path / "old.safetensors", {"format": FORMAT, "config": json.dumps(legacy), "beta": "1.0"})
    loaded, _ = load_model(tmp_path / "old.safetensors", get_registry())
    assert loaded.config.prior == loaded.config.posterior == GaussianConv.Config(hidden=8)
    w = model.sample_latent(2, torch.Generator().manual_seed(0))
    assert torch.equal(loaded.sample_latent(2, torch.Generator().manual_seed(0)), w)


# ---------------------------------------------------------------- recipe, task and sample command
def _train_tiny(out: Path, data: Path = TINY, *extra: str) -> dict:
    """The recipe with a small model, 4 steps on the 20 training images of ``data``: its metrics."""
    fields = [f"model.{k}={v}" for k, v in SMALL.items()] + ["model.prior.hidden=8", "model.posterior.hidden=8"]
    result = invoke(
        "run", str(REPO / "collagekit" / "recipes" / "vae_mnist.yaml"), f"data={data}", f"output={out}", *TINY_OPTIONS,
        "training.steps=4", "training.batch_size=4", "training.log_every=2", *fields, *extra, "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vae") / "run"
    _train_tiny(out)
    return out


def test_recipe_trains_scores_validation_and_saves(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["decoder"] == "collage" and metrics["steps"] == 4 and len(metrics["history"]) == 2
    assert (metrics["train_images"], metrics["scored_on"], metrics["validation_images"]) == (20, "validation", 6)
    assert np.isfinite(metrics["validation_elbo_nats"]) and not any(key.startswith("test_") for key in metrics)
    model, info = load_model(trained, get_registry())
    assert info["beta"] == 1.0 and model.config.width == SMALL["width"] and info["metrics"]["scored_on"] == "validation"


def test_the_test_images_are_read_only_when_asked(trained: Path, tmp_path: Path) -> None:
    """The same run on a file whose test images are blanked scores the same on validation, and differently on test."""
    images = read_idx_images(TINY / "t10k-images-idx3-ubyte.gz").clone()
    images[sum(TINY_COUNTS) :] = 0
    blanked = tmp_path / "mnist"
    blanked.mkdir()
    (blanked / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, 32, 28, 28) + images.numpy().tobytes())
    validation = _train_tiny(tmp_path / "validation", blanked)
    reference = json.loads((trained / "metrics.json").read_text())
    assert validation["validation_elbo_nats"] == reference["validation_elbo_nats"]
    test = _train_tiny(tmp_path / "test", blanked, "split=test")
    assert (test["scored_on"], test["test_images"]) == ("test", 6) and not any(k.startswith("validation_") for k in test)
    assert test["test_distortion_nats"] != reference["validation_distortion_nats"]  # the blank images were scored


def test_bench_sections_replace_only_their_own(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    common = ("bench", "vae", "--data", str(TINY), "--out", str(out), "--device", "cpu", *TINY_OPTIONS, "repeats=1")
    first = invoke(*common, f"models={trained.parent}", "section=tiny", "note=alpha-note")
    assert first.returncode == 0, first.stderr
    data = json.loads((out / "vae.json").read_text())
    row = data["sections"]["tiny"]["models"][0]
    assert (row["decoder"], row["heads"], row["latent"], row["auxiliary"], row["train_steps"]) == (
        "collage", "gaussian-conv / gaussian-conv, residual q", "16 → code", "learned×16", 4
    )  # fmt: skip
    assert data["sections"]["tiny"]["figures"]["magnification"] == "vae_magnification_tiny.png"
    assert (out / "vae_magnification_tiny.png").is_file() and "## tiny" in (out / "vae.md").read_text()
    # another section, as a run from before the validation split would have left it
    legacy = {k: v for k, v in data["sections"]["tiny"].items() if k not in ("set", "images", "conditions")}
    data["sections"]["other"] = {**legacy, "device": "cpu", "note": "beta-note"}
    (out / "vae.json").write_text(json.dumps(data))
    second = invoke(*common, f"models={trained.parent}", "section=tiny", "note=gamma-note")
    assert second.returncode == 0, second.stderr
    assert set(json.loads((out / "vae.json").read_text())["sections"]) == {"tiny", "other"}
    markdown = (out / "vae.md").read_text()
    assert "## other" in markdown and "## tiny" in markdown
    assert "alpha-note" not in markdown and "beta-note" in markdown and "gamma-note" in markdown
    assert "measured before the validation split" in markdown


def test_bench_scores_validation_unless_asked_and_refuses_models_that_saw_the_scored_images(trained: Path, tmp_path: Path) -> None:
    common = ("bench", "vae", "--data", str(TINY), "--out", str(tmp_path), "--device", "cpu", "repeats=1", f"models={trained.parent}")
    for extra, section, images in [((), "chosen", [20, 26]), (("split=test",), "final", [26, 32])]:
        result = invoke(*common, *TINY_OPTIONS, f"section={section}", *extra)
        assert result.returncode == 0, result.stderr
        results = json.loads((tmp_path / "vae.json").read_text())["sections"][section]
        assert (results["set"], results["images"], results["models"][0]["train_images"]) == (extra and "test" or "validation", images, 20)
    markdown = (tmp_path / "vae.md").read_text()
    assert "Scored on the validation images (20-25), models trained on images 0-19." in markdown
    assert "Scored on the test images (26-31)" in markdown
    refused = invoke(*common, "train_count=16", "validation_count=6", "section=leak")
    assert refused.returncode == 1 and "trained on the first 20 images" in refused.stderr and refused.stderr.count("\n") == 1


def test_bench_pairs_models_with_the_same_heads_and_sweeps_variants() -> None:
    from collagekit_vae.bench import _gaps, _sweeps

    def row(model, decoder, heads, beta, elbo, auxiliary="none"):
        return {"model": model, "decoder": decoder, "heads": heads, "auxiliary": auxiliary, "beta": beta, "elbo": elbo, "distortion": -elbo}

    rows = [
        row("a", "collage", "h1", 1.0, -110.0, "learned×16"), row("b", "conv", "h1", 1.0, -100.0),
        row("c", "conv", "h2", 1.0, -90.0), row("d", "collage", "h2", 0.5, -95.0), row("e", "collage", "h1", 0.5, -120.0),
    ]  # fmt: skip
    assert _gaps(rows) == [{"collage": "a", "conv": "b", "gap": 0.1, "within_5_percent": False}]
    rows.append(row("f", "collage", "h2", 1.0, -94.0))
    assert [(g["collage"], g["conv"], g["within_5_percent"]) for g in _gaps(rows)] == [("a", "b", False), ("f", "c", True)]
    sweeps = _sweeps(rows)  # variants trained at two or more β: (collage, h2) only; e differs from a in its patches
    assert list(sweeps) == ["collage (h2)"] and [r["model"] for r in sweeps["collage (h2)"]] == ["d", "f"]


@pytest.mark.parametrize(("option", "message"), [("section=../x", "section='../x'"), ("note=times: 2 threads", "note= must be plain text")])
def test_bench_refuses_bad_options(tmp_path: Path, option: str, message: str) -> None:
    result = invoke("bench", "vae", "--data", str(TINY), "--out", str(tmp_path), option, *TINY_OPTIONS)
    assert result.returncode == 1 and message in result.stderr and not any(tmp_path.iterdir())


def test_sample_command_writes_a_png_grid(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = invoke("sample", str(trained), "--n", "6", "--scale", "2", "-o", str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.mode == "L"
        assert image.size == (3 * (56 + 2) + 2, 2 * (56 + 2) + 2)  # 3 columns x 2 rows of 56 px, 2 px gutters


def test_shipped_model_samples(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = invoke("sample", "mnist", "--n", "4", "-o", str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        pixels = np.asarray(image)
    assert pixels.shape == (2 * 30 + 2, 2 * 30 + 2) and pixels.std() > 20  # digits, not a flat grey


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.safetensors", "does not exist"),
        (lambda d: _write(d / "junk.safetensors", b"not a safetensors file"), "not a readable safetensors file"),
    ],
)
def test_bad_checkpoint_is_one_line_error(tmp_path: Path, make, message: str) -> None:
    out = tmp_path / "grid.png"
    result = invoke("sample", str(make(tmp_path)), "--n", "4", "-o", str(out))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and message in result.stderr
    assert not out.exists()


def test_conv_checkpoint_refuses_scale(tmp_path: Path) -> None:
    result = invoke("sample", "mnist-conv", "--scale", "4", "-o", str(tmp_path / "g.png"))
    assert result.returncode == 1 and "decodes at --scale 1 only" in result.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
