"""Issue 18's hostile cases, one test per class: each ends in one ``error: ...`` line (or a correct
output) within bounded memory and time. tests/test_fuzz.py generalises them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from collagekit import budget
from collagekit.config import CollageConfig
from collagekit.container import Container, from_bytes, read_container, to_bytes, write_container
from collagekit.errors import CollagekitError
from collagekit.fileio import atomic_output, native_output
from collagekit.gridcodec import GridCollageCodec
from collagekit.recipe import RecipeModels, parse_override
from collagekit.registry import get_registry, plugin_versions

from conftest import DATA, invoke, make_distribution, run_cli
from fuzzing import Deep, Parsed, seed_files

FAST = ["encoder.collage_steps=2", "encoder.steps=2"]
OUTPUT = {"grid-collage": "out.png", "neural-collage": "out.png", "pifs": "out.png", "sparse-collage": "out.png", "audio-collage": "out.wav", "ifs": "out.ply"}


def one_error(result) -> str:
    """The single ``error:`` line a failed command printed."""
    assert result.returncode in (1, 2), result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def grid_code(path: Path, channels: int = 3, spatial: tuple[int, int] = (64, 64)) -> Path:
    """A real grid-collage code (the fractalize defaults: 8x8 ranges, the whole image as domain, dihedral
    cells), with its parameters at their start values: no fitting needed."""
    registry = get_registry()
    models = RecipeModels(registry)
    cfg = models.specialize(CollageConfig).model_validate(
        {"partitioner": {"name": "tiles2d", "range_size": 8, "domain_size": "full"}, "auxiliary": [{"name": "dihedral"}]}
    )
    collage = cfg.build(registry)
    x = torch.rand(1, channels, *spatial, generator=torch.Generator().manual_seed(0))
    solver = registry.build("solver", models.slot_union_adapter("solver").validate_python({"name": "anderson", "max_iter": 30}))
    container = GridCollageCodec.pack(
        modality="image", collage_config=cfg, collage=collage, params=collage.init_params(x), solver=solver,
        signal_shape=(channels, *spatial), created_by=plugin_versions(registry), registry=registry,
    )  # fmt: skip
    write_container(path, container)
    return path


def edited(source: Path, target: Path, edit: Callable[[Parsed], None]) -> Path:
    """A copy of a code with an edit an attacker made (the checksum recomputed to match)."""
    parsed = Parsed.of(source.read_bytes())
    edit(parsed)
    target.write_bytes(parsed.to_bytes())
    return target


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Path]:
    """One small valid file per codec (the fuzzer's starting points)."""
    folder = tmp_path_factory.mktemp("seeds")
    out = {}
    for codec, (blob, _) in seed_files(folder).items():
        out[codec] = folder / f"{codec}.clg"
        out[codec].write_bytes(blob)
    return out


# ---------------------------------------------------------------- memory: refused before allocating
def measured(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """``collagekit ARGS`` in a child process, and that process's peak RSS in MiB."""
    code = (
        "import resource, subprocess, sys, json\n"
        "done = subprocess.run([sys.executable, '-m', 'collagekit', *sys.argv[1:]], capture_output=True, text=True)\n"
        "print(json.dumps([done.returncode, done.stdout, done.stderr, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n"
    )
    full_env = {k: v for k, v in os.environ.items() if k not in ("COLLAGEKIT_DEBUG", "COLLAGEKIT_MAX_MEMORY")} | (env or {})
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env, timeout=600)
    status, stdout, stderr, kib = json.loads(done.stdout)
    return subprocess.CompletedProcess(args, status, stdout, stderr), kib / 1024


@pytest.fixture(scope="module")
def small_decode_mib(tmp_path_factory) -> float:
    """Peak RSS of a small, successful decode: the process's fixed cost (imports, registry)."""
    folder = tmp_path_factory.mktemp("baseline")
    done, mib = measured("decompress", str(grid_code(folder / "small.clg")), "-o", str(folder / "small.png"))
    assert done.returncode == 0, done.stderr
    return mib


def _scale_64(tmp: Path) -> list[str]:
    return ["decompress", str(grid_code(tmp / "frac.clg")), "-o", str(tmp / "big.png"), "--scale", "64"]


def _huge_range(tmp: Path) -> list[str]:
    """range_size 16384 with tensors whose shapes are consistent with it (one range cell)."""
    container = read_container(grid_code(tmp / "frac.clg"))
    container.header["collage"]["partitioner"]["range_size"] = 16384
    for key in ("scale", "mix"):
        container.tensors[f"params.{key}"] = torch.zeros(3, 1, 8)
    container.tensors["params.aux"] = torch.zeros(3, 1, 0)
    container.tensors["params.bias"] = torch.zeros(3, 1)
    write_container(tmp / "huge.clg", container)
    return ["decompress", str(tmp / "huge.clg"), "-o", str(tmp / "huge.png")]


def _points(tmp: Path) -> list[str]:
    ifs = tmp / "ifs.clg"
    write_container(ifs, _ifs_container())
    edited(ifs, tmp / "many.clg", lambda p: p.header.update(points=268435456))
    return ["decompress", str(tmp / "many.clg"), "-o", str(tmp / "many.ply")]


def _alias_bomb(tmp: Path) -> list[str]:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    (tmp / "bomb.yaml").write_text("\n".join(lines) + "\n")
    assert (tmp / "bomb.yaml").stat().st_size < 600
    return ["validate", str(tmp / "bomb.yaml")]


def _big_fit(tmp: Path) -> list[str]:
    Image.new("L", (8000, 8000)).save(tmp / "big.png")  # 64 M pixels, a few dozen KB
    return ["fractalize", str(tmp / "big.png"), "-o", str(tmp / "out.png")]


def _range_override(tmp: Path) -> list[str]:
    return ["fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp / "out.png"), "collage.partitioner.range_size=100000"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (_scale_64, "decoding at scale 64 needs about"),
        (_huge_range, "decoding this code needs about"),
        (_points, "rendering 268,435,456 points needs about"),
        (_alias_bomb, "expands to more than 100,000 values"),
        (_big_fit, "fitting a 1x8000x8000 signal needs about"),
        (_range_override, "fitting a 3x64x64 signal needs about"),
    ],
)
def test_hostile_sizes_are_refused_before_allocating(tmp_path: Path, small_decode_mib: float, case, message: str) -> None:
    started = time.perf_counter()
    done, mib = measured(*case(tmp_path))
    line = one_error(done)
    assert message in line, line
    if "memory" in line:
        assert "COLLAGEKIT_MAX_MEMORY" in line  # names the setting that raises the limit
    # What the refusal cost on top of the fixed cost of starting collagekit (the 8000x8000 input is
    # read before its fit is refused: 64 M float32 values).
    assert mib < small_decode_mib + (400 if case is _big_fit else 150), f"peak {mib:.0f} MiB"
    assert time.perf_counter() - started < 120
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".png", ".ply") and p.name != "big.png"]


def test_the_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = grid_code(tmp_path / "frac.clg")
    monkeypatch.setenv("COLLAGEKIT_MAX_MEMORY", "2M")
    line = one_error(invoke("decompress", str(code), "-o", str(tmp_path / "a.png"), "--scale", "2"))
    assert "above the limit of 2.0 MiB" in line and "COLLAGEKIT_MAX_MEMORY" in line
    monkeypatch.setenv("COLLAGEKIT_MAX_MEMORY", "1G")
    assert invoke("decompress", str(code), "-o", str(tmp_path / "a.png"), "--scale", "2").returncode == 0
    monkeypatch.setenv("COLLAGEKIT_MAX_MEMORY", "lots")
    assert "is not a size" in one_error(invoke("decompress", str(code), "-o", str(tmp_path / "b.png")))


@pytest.mark.parametrize(("text", "size"), [("8G", 8 << 30), ("512 MiB", 512 << 20), ("1.5g", 3 << 29), ("4096", 4096), ("2k", 2048)])
def test_sizes_parse(text: str, size: int) -> None:
    assert budget.parse_size(text) == size


def test_the_default_limit_is_a_laptops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLLAGEKIT_MAX_MEMORY", raising=False)
    assert 1 << 30 <= budget.limit() <= 4 << 30


# ---------------------------------------------------------------- headers: one line, never a traceback
def _ifs_container() -> Container:
    from collagekit_pointcloud.cloudio import Normalisation
    from collagekit_pointcloud.ifscodec import pack
    from collagekit_pointcloud.targets import random_ifs

    return pack(random_ifs(0, 3), Normalisation((1.0, 2.0, 3.0), 2.0), 500, 0, {"collagekit": "test"})


@pytest.mark.parametrize(
    ("codec", "path", "value", "message"),
    [
        ("grid-collage", ("signal", "spatial", 0), float("inf"), "holds the non-finite number Infinity"),
        ("grid-collage", ("signal", "channels"), float("inf"), "holds the non-finite number Infinity"),
        ("audio-collage", ("signal", "samples"), float("inf"), "holds the non-finite number Infinity"),
        ("neural-collage", ("image", "spatial", 1), float("-inf"), "holds the non-finite number -Infinity"),
        ("ifs", ("points",), float("inf"), "holds the non-finite number Infinity"),
        ("ifs", ("maps",), float("nan"), "holds the non-finite number NaN"),
        ("ifs", ("seed",), 2**64, "seed must be an integer from 0 to"),
        ("ifs", ("points",), 2**64, "points must be an integer from 1 to"),
        ("grid-collage", ("signal", "channels"), 2**70, "signal.channels must be an integer from 1 to"),
        ("audio-collage", ("signal", "samples"), 1e300, "signal.samples must be an integer"),
        ("pifs", ("signal", "spatial"), [64.0, 64], "signal.spatial must be an integer"),
        ("grid-collage", ("signal", "spatial"), Deep(1000), "nested more than 32 levels"),
        ("ifs", ("normalisation", "extent"), 1e308, "normalisation.extent must be a number from 0 to 1e+30"),
        ("audio-collage", ("signal_attrs", "scale"), 2, "its signal attributes hold 'scale'"),
    ],
)
def test_hostile_header_values_are_one_line_errors(tmp_path: Path, seeds: dict[str, Path], codec, path, value, message) -> None:
    def edit(parsed: Parsed) -> None:
        node = parsed.header
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    bad = edited(seeds[codec], tmp_path / "bad.clg", edit)
    assert message in one_error(invoke("decompress", str(bad), "-o", str(tmp_path / OUTPUT[codec])))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.clg"]


@pytest.mark.parametrize(("codec", "tensor"), [("grid-collage", "params.bias"), ("ifs", "A"), ("grid-collage", "operator.constant.0.patches")])
@pytest.mark.parametrize("dtype", ["I32", "F8_E4M3", "F16"])
def test_a_relabelled_tensor_dtype_is_refused(tmp_path: Path, seeds: dict[str, Path], codec: str, tensor: str, dtype: str) -> None:
    """F32 read as I32 has the same bytes: without the check it decoded to an all-white image."""

    def edit(parsed: Parsed) -> None:
        spec = parsed.table[tensor]
        count = (spec["data_offsets"][1] - spec["data_offsets"][0]) // {"I32": 4, "F8_E4M3": 1, "F16": 2}[dtype]
        spec["dtype"], spec["shape"] = dtype, spec["shape"] if dtype == "I32" else [count]

    bad = edited(seeds[codec], tmp_path / "bad.clg", edit)
    assert f"tensor '{tensor}' should be float32" in one_error(invoke("decompress", str(bad), "-o", str(tmp_path / OUTPUT[codec])))


def test_extent_too_large_for_float32_is_refused() -> None:
    from collagekit_pointcloud.ifscodec import unpack

    container = _ifs_container()
    container.header["normalisation"]["extent"] = 1e29
    container.tensors["t"] = container.tensors["t"] * 1e3  # the attractor reaches far from the cube
    with pytest.raises(CollagekitError, match="its points would reach beyond"):
        unpack(from_bytes(to_bytes(container)))


@pytest.mark.parametrize("where", ["header", "option", "recipe"])
def test_seeds_beyond_64_bits_are_one_line_errors(tmp_path: Path, where: str) -> None:
    ifs = tmp_path / "ifs.clg"
    write_container(ifs, _ifs_container())
    if where == "header":
        edited(ifs, ifs, lambda p: p.header.update(seed=2**64))
        result = invoke("decompress", str(ifs), "-o", str(tmp_path / "o.ply"))
    elif where == "option":
        result = invoke("decompress", str(ifs), "-o", str(tmp_path / "o.ply"), f"seed={2**64}")
    else:
        result = invoke("fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "o.png"), f"seed={2**64}")
    assert "seed" in one_error(result)


# ---------------------------------------------------------------- checksums
@pytest.mark.parametrize("codec", ["grid-collage", "ifs"])
def test_a_flipped_byte_is_refused_as_damage(tmp_path: Path, seeds: dict[str, Path], codec: str) -> None:
    """Fractalize and IFS codes carry no entropy-coded checksum of their own: the container's covers them."""
    blob = bytearray(seeds[codec].read_bytes())
    parsed = Parsed.of(bytes(blob))
    for position in (len(blob) - 3, len(blob) - len(parsed.data) - 40):  # a weight, then a header byte
        damaged = bytearray(blob)
        damaged[position] ^= 0x10
        (tmp_path / "bad.clg").write_bytes(bytes(damaged))
        line = one_error(invoke("decompress", str(tmp_path / "bad.clg"), "-o", str(tmp_path / OUTPUT[codec])))
        assert "damaged" in line or "not a valid .clg" in line, line


def test_files_without_a_checksum_still_decode(tmp_path: Path, seeds: dict[str, Path]) -> None:
    parsed = Parsed.of(seeds["grid-collage"].read_bytes())
    del parsed.table["__metadata__"]["crc32"]
    (tmp_path / "old.clg").write_bytes(parsed.to_bytes(recompute_checksum=False))
    assert invoke("decompress", str(tmp_path / "old.clg"), "-o", str(tmp_path / "o.png")).returncode == 0
    parsed.table["__metadata__"]["crc33"] = "00000000"  # a damaged key name is not an old file
    (tmp_path / "odd.clg").write_bytes(parsed.to_bytes(recompute_checksum=False))
    assert "unknown metadata" in one_error(invoke("decompress", str(tmp_path / "odd.clg"), "-o", str(tmp_path / "p.png")))


# ---------------------------------------------------------------- inputs
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 3), (1, 5000), (5000, 1)])
def test_tiny_and_thin_images_compress_and_decode(tmp_path: Path, size: tuple[int, int]) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    assert invoke("compress", str(tmp_path / "x.png"), "-o", str(tmp_path / "x.clg")).returncode == 0
    result = invoke("decompress", str(tmp_path / "x.clg"), "-o", str(tmp_path / "y.png"))
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "y.png").size == (size[1], size[0])


def test_32_bit_integer_images_outside_16_bits_are_refused(tmp_path: Path) -> None:
    values = np.linspace(0, 252_000, 64 * 64).reshape(64, 64).astype(np.int32)
    Image.fromarray(values, mode="I").save(tmp_path / "x.tif")
    line = one_error(invoke("compress", str(tmp_path / "x.tif"), "-o", str(tmp_path / "x.clg")))
    assert "32-bit integer image with values from 0 to 252000" in line
    assert not (tmp_path / "x.clg").exists()


def test_a_sample_rate_no_decoder_can_write_is_refused_before_compressing(tmp_path: Path) -> None:
    sf.write(tmp_path / "x.wav", np.sin(np.arange(20_000) / 10.0) * 0.3, 2_000_000)
    line = one_error(invoke("compress", str(tmp_path / "x.wav"), "-o", str(tmp_path / "x.clg")))
    assert "sample rate of 2,000,000 Hz" in line
    assert not (tmp_path / "x.clg").exists()


def test_an_unwritable_output_folder_is_one_line(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        folder = Path("/sys")  # not writable even by root
        if not folder.is_dir():
            pytest.skip("no unwritable folder available")
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
    line = one_error(invoke("compress", str(DATA / "kodim05_64.png"), "-o", str(folder / "x.clg")))
    assert "cannot write" in line and "ermission denied" in line
    assert not list(folder.glob(".x.*"))


# ---------------------------------------------------------------- recipes and options
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("task: image_fractalize\nx: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels"),
        ("task: image_fractalize\nx: &a [*a]\n", "recursive structure"),
        ("task: image_fractalize\noutput: o.png\nencoder: {name: fit, lr: .inf}\n", "encoder.lr: must be a finite number"),
        ("task: image_fractalize\noutput: o.png\nseed: 18446744073709551616\n", "seed: Input should be less than or equal to"),
        ("task: image_fractalize\noutput: o.png\nscale: " + "9" * 5000 + "\n", "invalid YAML"),
    ],
)
def test_hostile_recipes_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "r.yaml").write_text(text)
    assert message in one_error(invoke("validate", str(tmp_path / "r.yaml")))


def test_numbers_with_an_exponent_are_numbers() -> None:
    assert parse_override("tol=1e-300") == (["tol"], 1e-300)
    assert parse_override("lr=5e3") == (["lr"], 5000.0)
    assert parse_override("name=e5") == (["name"], "e5")


def test_a_huge_range_size_override_is_refused_before_allocating(tmp_path: Path) -> None:
    result = invoke("fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "o.png"), "collage.partitioner.range_size=100000")
    assert "COLLAGEKIT_MAX_MEMORY" in one_error(result)
    assert not list(tmp_path.iterdir())


def test_a_diverging_fit_is_a_setting_error_and_writes_nothing(tmp_path: Path) -> None:
    result = invoke("fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "o.png"), "encoder.lr=.inf", *FAST)
    assert "encoder.lr: must be a finite number" in one_error(result)
    result = invoke("fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp_path / "o.png"), "encoder.lr=1e30", *FAST)
    assert "the fit diverged" in one_error(result)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- the command line
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["decompress", "x.clg", "-o", "y.png", "--scale", "0"], "Invalid value for '--scale'"),
        (["decompress", "x.clg", "-o", "y.png", "--rate", "-5"], "Invalid value for '--rate'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["decompress"], "Missing argument"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.returncode == 2
    line = one_error(result)
    assert message in line and "--help" in line


def test_native_library_chatter_is_captured() -> None:
    with native_output() as lines:
        os.write(2, b"RPly: unexpected end of file\n")
        os.write(1, b"[Open3D Error] read failed\n")
    assert lines == ["RPly: unexpected end of file", "[Open3D Error] read failed"]


def test_a_damaged_mp3_is_one_line_with_the_decoders_words(tmp_path: Path) -> None:
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    rng = np.random.default_rng(0)
    (tmp_path / "x.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x10" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    result = run_cli("compress", str(tmp_path / "x.mp3"), "-o", str(tmp_path / "x.clg"))
    assert one_error(result).startswith(f"error: {tmp_path / 'x.mp3'}")
    assert not (tmp_path / "x.clg").exists()


# ---------------------------------------------------------------- temporary files
SLOW_WRITER = {
    "collagekit_slowwriter.py": """
import time
from pathlib import Path
from collagekit.hookspecs import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command()
    def slowwrite(path: str) -> None:
        from collagekit.fileio import atomic_output
        with atomic_output(Path(path)) as tmp:
            tmp.write_text("half")
            time.sleep(60)
"""
}


def test_sigterm_during_a_write_removes_the_temporary_file(tmp_path: Path) -> None:
    root = make_distribution(tmp_path / "site", "collagekit-slowwriter", "0.0.1", {"slowwriter": "collagekit_slowwriter"}, SLOW_WRITER)
    out = tmp_path / "out" / "result.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "collagekit", "slowwrite", str(out)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.parent.glob(".result.*.part.txt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert list(out.parent.glob(".result.*.part.txt")), "the command never started writing"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and stderr.strip() == "terminated"
    assert not out.parent.exists()  # no temporary left, and the folder made for the output is gone too


def test_leftovers_of_killed_runs_are_removed_by_the_next_write(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".out.{dead}.abc123.part.png"
    live = tmp_path / f".out.{os.getppid()}.def456.part.png"  # a running process's: kept
    other = tmp_path / f".other.{dead}.abc123.part.png"  # another output's: kept
    for path in (stale, live, other):
        path.write_bytes(b"x")
    with atomic_output(tmp_path / "out.png") as tmp:
        tmp.write_bytes(b"done")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "out.png").read_bytes() == b"done"
