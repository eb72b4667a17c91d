"""`collagekit bench kodak` on any folder of images: BD figures, fixed-rate means over the images every
codec reaches, the image list option, and its errors (the shipped models on two small photos)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from collagekit.bjontegaard import bd_psnr, bd_rate
from collagekit.metrics import at_rate
from collagekit_image.kodak import BD_WINDOW, available_anchors
from conftest import DATA, invoke

ANCHORS = [a for a in ("jpeg", "webp", "jpegxl") if a in available_anchors()]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    # Any file names and formats; sizes where every codec's sweep crosses 0.1-1 bpp.
    Image.open(DATA / "kodim05_64.png").resize((192, 160), Image.BICUBIC).save(folder / "harbour scene.png")
    Image.open(DATA / "kodim15_grey_48x40.png").resize((160, 192), Image.BICUBIC).save(folder / "face.bmp")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def results(photos: Path, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("results")
    result = invoke("bench", "kodak", "--data", str(photos), "--out", str(out), f"anchors={','.join(ANCHORS)}", "results=mine", "pifs_exhaustive=1", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} >= {"mine.md", "mine.json"}
    return json.loads((out / "mine.json").read_text()) | {"markdown": (out / "mine.md").read_text()}


def test_bd_figures_are_the_per_image_pchip_deltas_in_the_window(results: dict) -> None:
    rows = results["images"]
    assert sorted(r["image"] for r in rows) == ["face.bmp", "harbour scene.png"]
    assert set(results["tables"]["bd"]) == {*ANCHORS, "pifs", "sparse-collage"}
    for anchor, table in results["tables"]["bd"].items():
        expected = {}
        for r in rows:
            neural = [(p["bpp"], p["psnr_db"]) for p in r["neural"].values()]
            assert len(neural) == 4  # the four shipped models
            value = bd_psnr(r["anchors"][anchor], neural, BD_WINDOW)
            assert table["per_image"][r["image"]]["bd_psnr_db"] == (None if value is None else pytest.approx(value, abs=1e-4))
            rate = bd_rate(r["anchors"][anchor], neural, BD_WINDOW)
            assert table["per_image"][r["image"]]["bd_rate_pct"] == (None if rate is None else pytest.approx(rate, abs=1e-3))
            if value is not None:
                expected[r["image"]] = value
        assert table["bd_psnr_images"] == len(expected) > 0
        assert table["bd_psnr_db"] == pytest.approx(sum(expected.values()) / len(expected), abs=1e-3)
        assert table["curve_of_means_bd_psnr_db"] is not None
    assert "BD-PSNR" in results["markdown"] and "curve of means" in results["markdown"]


def test_the_sparse_collage_curve_has_its_own_deltas_against_every_codec(results: dict) -> None:
    rows = results["images"]
    assert set(results["tables"]["bd_sparse"]) == {"neural-collage", *ANCHORS, "pifs"}
    for r in rows:
        curve = [(p["bpp"], p["psnr_db"]) for p in r["sparse"]]
        assert curve == [tuple(p) for p in r["anchors"]["sparse-collage"]] and len(curve) >= 4
        assert all(p["encode_s"] > 0 and p["decode_s"] > 0 for p in r["sparse"])
        value = bd_psnr(r["anchors"]["pifs"], curve, BD_WINDOW)
        got = results["tables"]["bd_sparse"]["pifs"]["per_image"][r["image"]]["bd_psnr_db"]
        assert got == (None if value is None else pytest.approx(value, abs=1e-4))
    assert "sparse-collage against each codec" in results["markdown"]


def test_sparse_collage_encode_time_is_set_against_pifs_at_equal_psnr(results: dict) -> None:
    """Per sparse-collage point inside a PIFS sweep's PSNR range: PIFS's seconds, interpolated in
    log-time at that PSNR, over sparse-collage's; the exhaustive sweep only on the first image."""
    import math
    import statistics

    rows, summary = results["images"], results["summary"]
    assert "pifs_exhaustive" in rows[0] and "pifs_exhaustive" not in rows[1]
    assert [p["rms"] for p in rows[0]["pifs_exhaustive"]] == [6.0, 12.0, 20.0]
    for search in ("pifs", "pifs_exhaustive"):
        ratios = []
        for r in rows:
            sweep = sorted((p["psnr_db"], p["encode_s"]) for p in r.get(search, []))
            for point in r["sparse"]:
                for (p0, t0), (p1, t1) in zip(sweep, sweep[1:]):
                    if p0 <= point["psnr_db"] <= p1 and p1 > p0:
                        w = (point["psnr_db"] - p0) / (p1 - p0)
                        ratios.append(math.exp(math.log(t0) + w * (math.log(t1) - math.log(t0))) / point["encode_s"])
                        break
        if ratios:
            assert summary[f"sparse_speedup_vs_{search}"] == pytest.approx(statistics.median(ratios), abs=0.01)
            assert summary[f"sparse_speedup_vs_{search}_points"] == len(ratios)
            assert f"{summary[f'sparse_speedup_vs_{search}']:.1f}x" in results["markdown"]
        else:
            assert f"sparse_speedup_vs_{search}" not in summary
    assert "sparse_speedup_vs_pifs" in summary  # the nearest-neighbour sweep spans some of the curve


def test_fixed_rate_means_cover_only_images_every_codec_reaches(results: dict) -> None:
    rows = results["images"]
    codecs = ["neural-collage", *results["tables"]["bd"]]
    for key, table in results["tables"]["fixed_rate"].items():
        values = {c: [at_rate([(p["bpp"], p["psnr_db"]) for p in r["neural"].values()] if c == "neural-collage" else r["anchors"][c], float(key)) for r in rows] for c in codecs}
        reaching = [c for c in codecs if any(v is not None for v in values[c])]  # a codec reaching no image leaves the others comparable
        common = [i for i in range(len(rows)) if all(values[c][i] is not None for c in reaching)]
        assert table["common_images"] == len(common)
        for c in codecs:
            assert table["reached"][c] == sum(v is not None for v in values[c])
            if common and c in reaching:
                assert table["mean_over_common"][c] == pytest.approx(sum(values[c][i] for i in common) / len(common), abs=1e-3)
            else:
                assert table["mean_over_common"][c] is None
    assert "reaches" in results["markdown"]


def test_a_codec_that_reaches_a_rate_nowhere_leaves_the_others_comparable() -> None:
    """Neural Collage never as low as 0.15 bpp, PIFS not on the third image: the 0.15 bpp means are
    JPEG's and PIFS's over the two images both reach, Neural Collage's none."""
    from collagekit_image.kodak import fixed_rate_table

    def row(pifs: list[tuple[float, float]]) -> dict:
        return {"neural": {"q": {"bpp": 0.5, "psnr_db": 30.0}, "r": {"bpp": 0.8, "psnr_db": 31.0}},
                "anchors": {"jpeg": [(0.1, 25.0), (0.4, 29.0)], "pifs": pifs}}  # fmt: skip

    rows = [row([(0.12, 24.0), (0.35, 28.0)]), row([(0.12, 24.0), (0.35, 28.0)]), row([(0.2, 26.0), (0.4, 28.0)])]
    table = fixed_rate_table(rows, ["neural-collage", "jpeg", "pifs"])["0.15"]
    assert table["common_images"] == 2 and table["reached"] == {"neural-collage": 0, "jpeg": 3, "pifs": 2}
    assert table["mean_over_common"]["neural-collage"] is None
    assert table["mean_over_common"]["jpeg"] == pytest.approx(at_rate([(0.1, 25.0), (0.4, 29.0)], 0.15), abs=1e-3)
    assert table["mean_over_common"]["pifs"] == pytest.approx(at_rate([(0.12, 24.0), (0.35, 28.0)], 0.15), abs=1e-3)


def test_an_image_list_selects_files_and_a_missing_one_is_a_clear_error(photos: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("# one of the two\nface.bmp\n")
    out = tmp_path / "res"
    result = invoke("bench", "kodak", "--data", str(photos), "--out", str(out), f"images={listing}", "anchors=jpeg", "pifs=false", "models=nc-q2", "repeats=2")
    assert result.returncode == 0, result.stderr
    assert [r["image"] for r in json.loads((out / "kodak.json").read_text())["images"]] == ["face.bmp"]
    assert "per image and point (each the median of 2 run(s))" in (out / "kodak.md").read_text()  # sparse-collage's times too

    listing.write_text("face.bmp\nmissing.png\n")
    result = invoke("bench", "kodak", "--data", str(photos), "--out", str(tmp_path / "res2"), f"images={listing}", "anchors=jpeg", "pifs=false")
    assert result.returncode != 0 and "error:" in result.stderr and "missing.png" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "res2").exists()
    # The validation split names files of train_images: elsewhere it is refused the same way.
    result = invoke("bench", "kodak", "--data", str(photos), "--out", str(tmp_path / "res3"), "images=validation", "anchors=jpeg", "pifs=false")
    assert result.returncode != 0 and "--data" in result.stderr


def test_bench_sparse_collage_compares_variants_with_repeated_timings(photos: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("harbour scene.png\n")
    out = tmp_path / "res"
    result = invoke("bench", "sparse-collage", "--data", str(photos), "--out", str(out), f"images={listing}", "variants=base;prune_bits=0,probes=2",
                    "lambdas=60,250,1000", "repeats=2", "results=variants")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "variants.json").read_text())
    assert set(data["variants"]) == {"base", "prune_bits=0,probes=2"} and data["summary"]["repeats"] == 2
    for table in data["variants"].values():
        assert len(table["ladder"]) == 3 and table["vs_jpeg"]["bd_psnr_images"] == 1
    points = {name: v["points"] for name, v in data["images"][0]["variants"].items()}
    assert [p["lmbda"] for p in points["base"]] == [60.0, 250.0, 1000.0]
    coded = {name: [(p["bytes"], p["psnr_db"]) for p in ps] for name, ps in points.items()}
    assert coded["base"] != coded["prune_bits=0,probes=2"]  # the options reached the codec
    assert "each the median of 2 run(s)" in (out / "variants.md").read_text()
    bad = invoke("bench", "sparse-collage", "--data", str(photos), "--out", str(tmp_path / "bad"), f"images={listing}", "variants=base;probes=zero")
    assert bad.returncode != 0 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()
