"""The .clg container: round trips, and every malformed file is a one-line CollagekitError."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collagekit.container import Container, from_bytes, to_bytes
from collagekit.errors import CollagekitError
from collagekit.gridcodec import GridCollageCodec, decode_grid
from collagekit.recipe import RecipeModels
from collagekit.config import CollageConfig
from collagekit.registry import get_registry


@pytest.fixture(scope="module")
def valid_file() -> bytes:
    """A real grid-collage code for a random 16x12 grey image (random parameters: no fitting needed)."""
    registry = get_registry()
    cfg = RecipeModels(registry).specialize(CollageConfig).model_validate(
        {"partitioner": {"name": "tiles2d", "range_size": 4, "domain_size": 8}, "auxiliary": [{"name": "learned", "count": 2}]}
    )
    collage = cfg.build(registry)
    torch.manual_seed(0)
    x = torch.rand(1, 1, 16, 12)
    params = collage.init_params(x).map(lambda t: t + torch.randn_like(t))
    solver = registry.build("solver", RecipeModels(registry).slot_union_adapter("solver").validate_python({"name": "anderson"}))
    container = GridCollageCodec.pack(
        modality="image", collage_config=cfg, collage=collage, params=params, solver=solver,
        signal_shape=(1, 16, 12), created_by={"collagekit": "test"},
    )
    return to_bytes(container)


def _decode(data: bytes) -> torch.Tensor:
    registry = get_registry()
    return GridCollageCodec().decode(from_bytes(data), registry, scale=1, device=torch.device("cpu"), options={})


def test_round_trip_decodes_a_fixed_point(valid_file: bytes) -> None:
    container = from_bytes(valid_file)
    assert container.header["codec"] == "grid-collage" and container.header["version"] == 1
    collage, params, solver, shape = GridCollageCodec.unpack(container, get_registry())
    z = decode_grid(collage, params, solver, shape, 1, torch.device("cpu"))
    assert z.shape == (1, 1, 16, 12)
    step = collage.step_fn(params, (16, 12))
    assert (step(z) - z).abs().max() <= 1e-4  # the solver's tolerance


def test_file_holds_no_pickle_and_a_json_header(valid_file: bytes) -> None:
    (length,) = struct.unpack("<Q", valid_file[:8])
    header = json.loads(valid_file[8 : 8 + length])
    meta = json.loads(header["__metadata__"]["collagekit"])
    assert meta["collage"]["partitioner"]["name"] == "tiles2d"
    assert b"\x80\x04" not in valid_file[: 8 + length]  # no pickle protocol marker in the header


@pytest.mark.parametrize("cut", [0, 4, 8, 20, 100, -1])
def test_truncated_files_are_clear_errors(valid_file: bytes, cut: int) -> None:
    with pytest.raises(CollagekitError) as info:
        _decode(valid_file[:cut])
    assert "\n" not in str(info.value)


def test_wrong_version_and_foreign_safetensors(valid_file: bytes) -> None:
    newer = Container({"codec": "grid-collage", "modality": "image"}, {})
    data = bytearray(to_bytes(newer))
    data = bytes(data).replace(b'\\"version\\":1', b'\\"version\\":9')
    with pytest.raises(CollagekitError, match="version 9 is not supported"):
        from_bytes(data)
    from safetensors.torch import save

    with pytest.raises(CollagekitError, match="no collagekit header"):
        from_bytes(save({"x": torch.zeros(3)}))


def test_tampered_shapes_are_caught(valid_file: bytes) -> None:
    container = from_bytes(valid_file)
    container.header["signal"]["spatial"] = [17, 12]  # parameters no longer match the signal
    with pytest.raises(CollagekitError, match=r"tensor 'params.scale' should be float32 \(1, 15, 2\), found float32 \(1, 12, 2\)"):
        _decode(to_bytes(container))
    container = from_bytes(valid_file)
    container.header["signal"]["spatial"] = [1 << 20, 1 << 20]
    with pytest.raises(CollagekitError, match=r"signal.spatial \[1048576, 1048576\] holds more than"):
        _decode(to_bytes(container))
    container = from_bytes(valid_file)
    container.tensors["params.bias"][0, 0] = float("nan")
    with pytest.raises(CollagekitError, match="NaN"):
        _decode(to_bytes(container))
    container = from_bytes(valid_file)
    container.header["collage"]["partitioner"]["name"] = "nonesuch"
    with pytest.raises(CollagekitError, match="needs the partitioner 'nonesuch', which no loaded plugin provides; it was written by: collagekit test"):
        _decode(to_bytes(container))
    container = from_bytes(valid_file)
    del container.header["collage"]["pooler"]
    with pytest.raises(CollagekitError, match="corrupt"):
        _decode(to_bytes(container))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=512))
def test_random_bytes_never_crash(blob: bytes) -> None:
    with pytest.raises(CollagekitError):
        from_bytes(blob)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_files_decode_or_fail_cleanly(valid_file: bytes, data) -> None:
    blob = bytearray(valid_file)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(blob) - 1))
        blob[position] = data.draw(st.integers(0, 255))
    try:
        z = _decode(bytes(blob))
    except CollagekitError as exc:
        assert "\n" not in str(exc)
    else:
        assert z.shape[:2] == (1, 1)
