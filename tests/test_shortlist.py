"""The amortized collage search: a shortlist network's candidate lists, the exact pick among them, and
the shipped shortlist against the exhaustive search on a real image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from collagekit_image.imageio import load_image
from collagekit_image.pretrained import SHORTLISTS
from collagekit_image.sparsecodec import COLLAGE_KEYS, Layout, SparseCollageCodec
from conftest import DATA
from safetensors.torch import save_file

from collagekit.colour import rgb_to_ycbcr
from collagekit.config import ShortlistConfig
from collagekit.errors import CollagekitError
from collagekit.search import _best_listed, _best_single, best_pairs, search_tree
from collagekit.shortlist import Shortlist, ShortlistObjective


def _blocks(n: int, r: int, seed: int) -> torch.Tensor:
    return torch.randn(n, r, generator=torch.Generator().manual_seed(seed))


def test_a_class_per_listed_range_is_the_exhaustive_search_over_that_class() -> None:
    rc, cands = _blocks(200, 16, 0), _blocks(300, 16, 1)
    rc, cands = rc - rc.mean(-1, keepdim=True), cands - cands.mean(-1, keepdim=True)
    norms = (cands**2).sum(-1)
    none = torch.zeros(200, 0, dtype=torch.long)
    exhaustive, _ = _best_single(rc, cands, norms, 0.9, none)
    # Every source in one class, every range listing it: the exhaustive search's picks exactly.
    one = _best_listed(rc, cands, norms, 0.9, none, torch.zeros(200, 1, dtype=torch.long), torch.zeros(300, dtype=torch.long))
    assert torch.equal(one, exhaustive)
    # Four classes, two listed per range: each pick is the best source of the range's two classes.
    source_class = torch.arange(300) % 4
    listed = torch.stack([torch.arange(200) % 4, (torch.arange(200) + 1) % 4], 1)
    pick = _best_listed(rc, cands, norms, 0.9, none, listed, source_class)
    assert ((source_class[pick] == listed[:, 0]) | (source_class[pick] == listed[:, 1])).all()
    for row in (0, 57, 199):
        allowed = ((source_class == listed[row, 0]) | (source_class == listed[row, 1])).nonzero().squeeze(1)
        best, _ = _best_single(rc[row : row + 1], cands[allowed], norms[allowed], 0.9, none[:1])
        assert int(allowed[best]) == int(pick[row])
    # A source a range already took (matching pursuit) is never picked again.
    taken = exhaustive[:, None]
    second = _best_listed(rc, cands, norms, 0.9, taken, torch.zeros(200, 1, dtype=torch.long), torch.zeros(300, dtype=torch.long))
    assert not (second == exhaustive).any()
    assert torch.equal(second, _best_single(rc, cands, norms, 0.9, taken)[0])


@pytest.mark.parametrize("sign", ["sum", "abs"])
def test_a_blocks_class_ignores_its_mean_scale_and_sign(sign: str) -> None:
    torch.manual_seed(0)
    shortlist = Shortlist(ShortlistConfig(samples=[16], classes=8, hidden=16, sign=sign))
    blocks = _blocks(50, 16, 2)
    logits = shortlist.logits(blocks)
    for changed in (blocks + 3.0, 0.2 * blocks, -blocks, -0.5 * blocks - 1.0):
        assert torch.allclose(shortlist.logits(changed), logits, atol=1e-5)


def test_training_brings_a_range_and_its_best_source_into_one_class() -> None:
    """A few hundred steps on one image's exhaustive picks: the share of pairs that meet rises well
    above what the compared share alone would give (a random assignment)."""
    torch.manual_seed(0)
    x = rgb_to_ycbcr(load_image(DATA / "kodim05_64.png", 1 << 20))[:, :1]
    layout = Layout(**{k: v for k, v in zip(COLLAGE_KEYS, (8, 2, 1, True, 1, 7, 0.95, 4.0))})
    ranges, matches, raw = best_pairs(layout.collage(), x, 1)  # 4x4 cells
    sources = raw.reshape(-1, 16)
    shortlist = Shortlist(ShortlistConfig(samples=[16], classes=8, hidden=32))
    objective = ShortlistObjective(shortlist, lmbda=0.5, probes=1)
    batch = {"ranges.16": ranges, "matches.16": matches, "sources.16": sources[torch.randperm(sources.shape[0])[: ranges.shape[0]]]}
    optimiser = torch.optim.Adam(shortlist.parameters(), lr=3e-3)
    for _ in range(300):
        loss, metrics = objective(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    _, metrics = objective(batch)
    assert metrics["recall16"] > 3 * metrics["compared16"] and metrics["recall16"] > 0.5


def test_the_shipped_shortlist_finds_nearly_what_the_exhaustive_search_finds() -> None:
    """On a real image (a 64x64 Kodak crop, not trained on), with the codec's layout: every range's
    listed pick codes it within a small margin of the exhaustive pick, over the whole tree."""
    loaded = SHORTLISTS.load("shortlist")
    x = rgb_to_ycbcr(load_image(DATA / "kodim05_64.png", 1 << 20))[:, :1]
    layout = Layout(range_size=16, levels=3, domain_stride=1, dihedral=True, sources=1, weight_levels=7, contraction=0.95, bias_step=4.0)
    # Unquantised: the error each search ranks its candidates by, so the exhaustive pick is the floor.
    exhaustive = search_tree(layout.collage(), x)
    listed = search_tree(layout.collage(), x, shortlist=loaded.model, probes=2)
    for level in (1, 2):  # 8x8 and 4x4 cells: the ones with a network
        best, found = exhaustive.codes[level].error[:, 0], listed.codes[level].error[:, 0]
        assert (found >= best - 1e-6).all()
        assert found.sum() <= 1.25 * best.sum(), (level, float(found.sum() / best.sum()))
    assert torch.equal(exhaustive.codes[0].index, listed.codes[0].index)  # 16x16 cells: searched exhaustively


def test_a_shortlist_saved_before_the_sign_field_loads_as_it_was_trained(tmp_path: Path) -> None:
    torch.manual_seed(0)
    old = Shortlist(ShortlistConfig(samples=[16], classes=8, hidden=16))
    path = tmp_path / "old.safetensors"
    config = {"samples": [16], "classes": 8, "hidden": 16}  # what a file of 2026-12-07 holds
    save_file(old.state_dict(), str(path), metadata={"format": "collagekit-image-shortlist", "config": json.dumps(config)})
    loaded = SHORTLISTS.load(str(path)).model
    assert loaded.cfg.sign == "sum"
    blocks = _blocks(40, 16, 3)
    assert torch.equal(loaded.lists(blocks, blocks, 2)[0], old.lists(blocks, blocks, 2)[0])


def test_a_bad_shortlist_is_a_one_line_error(tmp_path: Path) -> None:
    x = load_image(DATA / "kodim05_64.png", 1 << 20)
    huge = tmp_path / "huge.safetensors"  # a tiny file whose config would build gigabytes of networks
    save_file({}, str(huge), metadata={"format": "collagekit-image-shortlist", "config": json.dumps({"samples": [1 << 30], "classes": 64, "hidden": 64})})
    for shortlist, match in [
        ("nope", "unknown search shortlist 'nope'"),
        (str(tmp_path / "missing.safetensors"), "does not exist"),
        ("nc-q1", "unknown search shortlist"),  # a Neural Collage model's name is not a shortlist's
        (str(huge), "malformed config"),
    ]:
        with pytest.raises(CollagekitError, match=match) as info:
            SparseCollageCodec().encode(x, None, quality=None, device=torch.device("cpu"), options={"range_size": 8, "shortlist": shortlist})
        assert "\n" not in str(info.value)
