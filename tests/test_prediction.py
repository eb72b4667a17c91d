"""Predictive coding of latent groups: the median edge detector (collagekit.prediction) and its use in
collagekit.codec's latent-group coding (chosen per group, exact, and refused where a file misuses it)."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange
from hypothesis import given, settings
from hypothesis import strategies as st

from collagekit.codec import CellGrid, decode_latent_groups, encode_latent_groups
from collagekit.errors import CollagekitError
from collagekit.prediction import med_reconstruct, med_residuals

M = 255


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_residuals_invert_exactly_and_stay_within_twice_the_bound(n: int, h: int, w: int, seed: int) -> None:
    g = torch.randint(-M, M + 1, (n, h, w), generator=torch.Generator().manual_seed(seed))
    r = med_residuals(g)
    assert torch.equal(med_reconstruct(r), g)
    assert int(r.abs().max()) <= 2 * M


def test_the_predictor_follows_gradients_and_edges() -> None:
    i, j = torch.meshgrid(torch.arange(6), torch.arange(8), indexing="ij")
    ramp = (3 * i - 2 * j)[None]  # a plane: a + b - c predicts it exactly
    r = med_residuals(ramp)
    assert not r[:, 1:, 1:].any() and r[0, 0, 0] == 0
    edge = torch.where(j >= 4, 50, -50)[None]  # a vertical edge: the upper neighbour predicts it
    assert not med_residuals(edge)[:, 1:, :].any()
    row = torch.tensor([[[5, 7, 4, 4]]])  # one row: plain differences
    assert med_residuals(row).tolist() == [[[5, 2, -3, 0]]]


def _smooth_offsets(tiles: int = 12, side: int = 4) -> torch.Tensor:
    """(t 1 k) offsets of a slowly varying level, laid out as a 3 x 4 grid of tiles of side x side cells."""
    y, x = torch.meshgrid(torch.arange(3 * side), torch.arange(4 * side), indexing="ij")
    level = (20 * torch.sin(y / 3.0) + 15 * torch.cos(x / 4.0)).round().long()
    return rearrange(level, "(h s) (w r) -> (h w) 1 (s r)", s=side, r=side)


GRID = {"b": CellGrid("(n h w) c (s r) -> (n c) (h s) (w r)", {"n": 1, "h": 3, "w": 4, "s": 4})}


def test_smooth_offsets_are_coded_as_residuals_and_come_back_exactly() -> None:
    offsets = _smooth_offsets()
    noise = torch.randint(-3, 4, (12, 5, 16), generator=torch.Generator().manual_seed(1))
    groups = {"b": offsets, "a": noise}
    data, split, predicted = encode_latent_groups(groups, M, GRID)
    assert predicted == ["b"]
    plain, _, none = encode_latent_groups(groups, M)
    assert none == [] and len(data) < len(plain)
    shapes = {k: tuple(v.shape) for k, v in groups.items()}
    out = decode_latent_groups(data, shapes, split, M, "test", predicted, GRID)
    assert torch.equal(out["b"], offsets) and torch.equal(out["a"], noise)


def test_prediction_is_not_used_where_it_does_not_pay() -> None:
    noise = torch.randint(-2, 3, (12, 1, 16), generator=torch.Generator().manual_seed(2))
    _, _, predicted = encode_latent_groups({"b": noise}, M, GRID)
    assert predicted == []


def test_files_that_misuse_prediction_are_refused() -> None:
    offsets = _smooth_offsets()
    data, split, predicted = encode_latent_groups({"b": offsets}, M, GRID)
    shapes = {"b": tuple(offsets.shape)}
    with pytest.raises(CollagekitError, match="streams are not the ones"):  # header says plain values
        decode_latent_groups(data, shapes, split, M, "test")
    with pytest.raises(CollagekitError, match="no place in the signal"):
        decode_latent_groups(data, shapes, split, M, "test", predicted, {})
    # Residuals that rebuild values outside [-M, M] (a tampered file) are refused, not clamped.
    data, split, predicted = encode_latent_groups({"b": offsets + 180}, M, GRID)
    assert predicted == ["b"] and int((offsets + 180).max()) > 150
    with pytest.raises(CollagekitError, match="outside"):
        decode_latent_groups(data, shapes, split, 150, "test", predicted, GRID)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 2 * M))
def test_any_residuals_decode_within_range_or_are_refused(seed: int, spread: int) -> None:
    """Residual streams a file could hold (anything up to the 2M bound) never decode to values
    outside [-M, M]: they are refused as corrupt instead."""
    from collagekit.codec import _encode_signed, _group_streams

    residuals = torch.randint(-spread, spread + 1, (12, 1, 16), generator=torch.Generator().manual_seed(seed))
    data = _encode_signed(_group_streams("b", residuals, split=False, predicted=True), 2 * M)
    try:
        out = decode_latent_groups(data, {"b": (12, 1, 16)}, [], M, "test", ["b"], GRID)
    except CollagekitError as error:
        assert "outside" in str(error)
        return
    assert int(out["b"].abs().max()) <= M
