"""``collagekit bench kodak``: Neural Collage rate-distortion and speed on a folder of images (the 24
Kodak images by default), against JPEG, WebP, JPEG 2000, AVIF, JPEG XL and the PIFS baseline (DESIGN
section 4).

* Images: every image file of the data folder (any names), or ``images=validation`` (the validation
  split, :mod:`collagekit_image.validation`; pass ``--data ../shared/data/train_images``) or
  ``images=FILE`` (a text file naming files of the folder, one a line). Every codec sees the same
  8-bit RGB pixels.
* Neural Collage: every shipped quality (``nc-q*``), or ``models=a,b`` (names or paths): one curve per
  image. bpp = .clg file bytes x 8 / pixels; PSNR of the file decoded from its bytes, 8-bit, whole
  image. Encode and decode seconds: the median of ``repeats`` runs after one untimed warm-up encode
  and decode; decode includes entropy decoding.
* Anchors, each swept over its quality setting from below 0.1 bpp (where the codec can) to above 1 bpp:
  Pillow JPEG (``optimize=True``), WebP (``method=6``), JPEG 2000 (``mct=1``, rate sweep), AVIF (one
  thread), JPEG XL (libjxl through ``imagecodecs``, distance sweep, one thread), each if installed; PIFS
  via the ``pifs`` codec (nearest-neighbour search, an RMS sweep; ``pifs=false`` skips it).
* The ``sparse-collage`` codec (the core's least-squares collage search, :mod:`collagekit_image.sparsecodec`)
  over its lmbda ladder, a curve like the anchors' (``sparse=false`` skips it), with its own
  Bjøntegaard deltas against every anchor and its encode and decode seconds (the median of ``repeats``
  runs per point, as PIFS's encode seconds).
* BD-PSNR and BD-rate of Neural Collage against every anchor (:mod:`collagekit.bjontegaard`, PCHIP):
  per image over the bpp interval both curves cover within 0.1-1.0 bpp, then the mean over the images
  where that interval exists (the headline); also on the set's mean curves ("curve of means"). And
  every codec against JPEG, for scale.
* PSNR at 0.15 and 0.30 bpp (each curve interpolated in log-bpp): means over the images that every
  compared codec reaches at that rate, with each codec's own count.
* Per model: mean bpp, PSNR and times, and each anchor's PSNR at that image's Neural Collage bpp; its
  encode time against the PIFS sweep's encode time interpolated (in log-time) at the same PSNR.
* sparse-collage's encode time against PIFS's at equal PSNR: per sparse-collage point inside a PIFS
  sweep's PSNR range, PIFS's encode seconds interpolated there over sparse-collage's; the median ratio,
  against the nearest-neighbour sweep and (``pifs_exhaustive=N``, the first N images) the exhaustive one
  (RMS targets 6, 12 and 20 only: minutes per point).

Options: ``limit=N`` (first N images), ``repeats=R``, ``models=...``, ``anchors=jpeg,webp,...``,
``pifs=false``, ``pifs_exhaustive=N``, ``sparse=false``, ``images=validation|FILE``, ``results=STEM`` (results file names; default ``kodak``, or
``kodak_validation`` with ``images=validation``).
"""

from __future__ import annotations

import io
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from collagekit.bench import BenchContext, write_results
from collagekit.bjontegaard import bd_psnr, bd_rate
from collagekit.errors import CollagekitError
from collagekit.metrics import at_rate
from collagekit.timing import median_time
from collagekit_pifs.bench import pifs_curve

NEURAL = "neural-collage"
SPARSE = "sparse-collage"
TARGETS = (0.15, 0.30)
BD_WINDOW = (0.1, 1.0)  # bpp interval the Bjøntegaard deltas are taken over
MAX_PIXELS = 1 << 26
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SWEEPS: dict[str, tuple] = {  # quality settings reaching from below 0.1 bpp (where the codec can) to above 1 bpp
    "jpeg": (1, 3, 6, 10, 15, 25, 40, 60, 80),
    "webp": (0, 3, 10, 25, 45, 65, 85),
    "jpeg2000": (0.06, 0.1, 0.15, 0.22, 0.33, 0.5, 0.8, 1.2),  # target bpp -> compression ratio 24/bpp
    "avif": (0, 5, 15, 30, 45, 60, 80),
    "jpegxl": (25.0, 15.0, 10.0, 7.0, 5.0, 3.5, 2.5, 1.7, 1.2, 0.8),  # butteraugli distance; 25 is libjxl's largest
}
PIFS_RMS = (4.0, 6.0, 8.0, 12.0, 20.0, 32.0, 50.0, 80.0)
PIFS_EXHAUSTIVE_RMS = (6.0, 12.0, 20.0)  # the exhaustive search takes minutes per point on a Kodak image: the middle of the sweep
# grey levels^2 per bit, one shipped set of stream priors each: above 1 bpp down to below 0.15 bpp on
# every Kodak image (2500 left kodim05/08 at 0.16-0.18)
SPARSE_LAMBDAS = (10.0, 24.0, 64.0, 160.0, 400.0, 1000.0, 2500.0, 6400.0)
LABELS = {"jpeg": "JPEG", "webp": "WebP", "jpeg2000": "JPEG 2000", "avif": "AVIF", "jpegxl": "JPEG XL", "pifs": "PIFS", NEURAL: "Neural Collage", SPARSE: "sparse-collage"}


def _encode_decode(image, codec: str, setting) -> tuple[int, np.ndarray]:
    """File bytes and decoded 8-bit RGB pixels of one anchor at one setting."""
    if codec == "jpegxl":
        import imagecodecs

        data = imagecodecs.jpegxl_encode(np.asarray(image), distance=setting, effort=7, numthreads=1)
        return len(data), imagecodecs.jpegxl_decode(data, numthreads=1)
    from PIL import Image

    buf = io.BytesIO()
    if codec == "jpeg":
        image.save(buf, "JPEG", quality=setting, optimize=True)
    elif codec == "webp":
        image.save(buf, "WEBP", quality=setting, method=6)
    elif codec == "jpeg2000":
        image.save(buf, "JPEG2000", quality_mode="rates", quality_layers=[24.0 / setting], mct=1, irreversible=True)
    elif codec == "avif":
        image.save(buf, "AVIF", quality=setting, max_threads=1)
    size = buf.tell()
    buf.seek(0)
    with Image.open(buf) as decoded:
        return size, np.asarray(decoded.convert("RGB"))


def _has_jpegxl() -> bool:
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(imagecodecs.JPEGXL.available)


def available_anchors() -> list[str]:
    from PIL import features

    have = {
        "jpeg": features.check("jpg"),
        "webp": features.check("webp"),
        "jpeg2000": features.check("jpg_2000"),
        "avif": features.check("avif"),
        "jpegxl": _has_jpegxl(),
    }
    return [name for name, ok in have.items() if ok]


def anchor_curve(image, codec: str) -> list[tuple[float, float]]:
    """(bpp, PSNR) of one anchor over its quality sweep."""
    from collagekit.metrics import psnr_uint8

    reference = np.asarray(image)
    pixels = image.size[0] * image.size[1]
    return [(size * 8 / pixels, psnr_uint8(reference, decoded)) for size, decoded in (_encode_decode(image, codec, s) for s in SWEEPS[codec])]


def neural_point(x: torch.Tensor, model: str, device: torch.device, repeats: int) -> dict[str, Any]:
    """One image through the neural-collage codec: file bytes, PSNR of the decoded file, timings."""
    from collagekit.container import from_bytes, to_bytes
    from collagekit.metrics import psnr
    from collagekit_image.ncodec import NeuralCollageCodec

    codec = NeuralCollageCodec()
    options = {"model": model}

    encoded = median_time(lambda: to_bytes(codec.encode(x, None, quality=None, device=device, options=options)), repeats, device)
    data = encoded.result
    decoded_t = median_time(lambda: codec.decode(from_bytes(data), None, scale=1, device=device, options=options).cpu(), repeats, device)
    encode_s, decode_s, decoded = encoded.seconds, decoded_t.seconds, decoded_t.result
    pixels = x.shape[2] * x.shape[3]
    return {"bpp": len(data) * 8 / pixels, "psnr_db": psnr(x, decoded), "encode_s": encode_s, "decode_s": decode_s, "bytes": len(data)}


def sparse_curve(x: torch.Tensor, lambdas, device: torch.device, options: dict[str, Any] | None = None, repeats: int = 1) -> list[dict[str, Any]]:
    """(1 c h w) -> one row per lmbda of the sparse-collage codec (with these codec ``options``): bpp
    (file), PSNR of the decoded file, encode and decode seconds (the median of ``repeats`` runs)."""
    from collagekit.container import from_bytes, to_bytes
    from collagekit.metrics import psnr
    from collagekit_image.sparsecodec import SparseCollageCodec

    codec = SparseCollageCodec()
    pixels = x.shape[2] * x.shape[3]
    rows = []
    for lmbda in lambdas:
        settings = {**(options or {}), "lmbda": float(lmbda)}
        encoded = median_time(lambda settings=settings: to_bytes(codec.encode(x, None, quality=None, device=device, options=settings)), repeats)
        data = encoded.result
        decoded = median_time(lambda data=data: codec.decode(from_bytes(data), None, scale=1, device=device, options={}).cpu(), repeats)
        rows.append({"lmbda": lmbda, "bpp": len(data) * 8 / pixels, "psnr_db": psnr(x, decoded.result), "encode_s": encoded.seconds,
                     "decode_s": decoded.seconds, "bytes": len(data)})  # fmt: skip
    return rows


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.mean(values), 3) if values else None


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def image_paths(folder: Path, images: str | None) -> list[Path]:
    """The images to measure: every image file of ``folder`` by name, or those ``images`` names."""
    if images is None:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    from collagekit_image.validation import read_image_list, validation_names

    if images == "validation":
        names = validation_names()
    else:
        listing = Path(images)
        if not listing.is_file():
            raise CollagekitError(f"images={images!r}: no such list file (or use images=validation)")
        names = read_image_list(listing)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise CollagekitError(f"{len(missing)} listed image(s) are not in {folder}, e.g. {missing[0]!r}; pass --data DIR")
    return [folder / name for name in sorted(set(names))]


def _rgb(path: Path) -> tuple[Any, torch.Tensor]:
    """The image as 8-bit RGB, as a Pillow image (anchors) and a (1 3 h w) tensor in [0, 1] (Neural Collage, PIFS)."""
    from PIL import Image

    from collagekit.metrics import to_uint8
    from collagekit_image.imageio import load_image

    x = load_image(path, MAX_PIXELS)  # the safe reader: size limit, clear errors
    array = to_uint8(x[0].expand(3, -1, -1)).transpose(1, 2, 0).copy()  # (h w 3); grey becomes RGB
    return Image.fromarray(array), torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255.0


def run(ctx: BenchContext) -> dict[str, Any]:
    from collagekit_image.pretrained import QUALITY_PREFIX, STORE

    started = time.perf_counter()
    images = ctx.option("images")
    paths = image_paths(ctx.data, images)[: ctx.option("limit")]
    if not paths:
        raise CollagekitError(f"no image files in {ctx.data}")
    name = ctx.option("results") or ("kodak_validation" if images == "validation" else "kodak")
    repeats = ctx.option("repeats")
    models = [m for m in (ctx.option("models") or ",".join(f"{QUALITY_PREFIX}{q}" for q in STORE.qualities())).split(",") if m]
    if not models:
        raise CollagekitError("no Neural Collage model is installed; pass models=PATH[,PATH...]")
    anchors = [a for a in (ctx.option("anchors") or ",".join(available_anchors())).split(",") if a]
    unknown = sorted(set(anchors) - set(SWEEPS))
    if unknown:
        raise CollagekitError(f"unknown anchors {', '.join(unknown)}; choose from: {', '.join(SWEEPS)}")
    missing = sorted(set(anchors) - set(available_anchors()))
    if missing:
        raise CollagekitError(f"anchors {', '.join(missing)} are not available here (Pillow features, or imagecodecs for jpegxl)")
    with_pifs, with_sparse = ctx.option("pifs"), ctx.option("sparse")
    device = ctx.device
    loaded = {model: STORE.load(model) for model in models}  # fail early on an unknown model
    # Untimed warm-up: the first encode/decode pays lazy imports and allocator growth.
    warm = _rgb(paths[0])[1][..., :256, :256]
    for model in models:
        neural_point(warm, model, device, 1)
    if with_sparse:
        sparse_curve(warm, SPARSE_LAMBDAS[:1], torch.device("cpu"))

    rows: list[dict[str, Any]] = []
    for path in paths:
        image, x = _rgb(path)
        row: dict[str, Any] = {"image": path.name, "neural": {}, "anchors": {}}
        for model in models:
            row["neural"][model] = neural_point(x, model, device, repeats)
        for anchor in anchors:
            row["anchors"][anchor] = anchor_curve(image, anchor)
        if with_pifs:
            row["pifs"] = pifs_curve(x, "nearest", PIFS_RMS, torch.device("cpu"), {}, repeats)
            row["anchors"]["pifs"] = [(r["bpp"], r["psnr_db"]) for r in row["pifs"]]
        if len(rows) < ctx.option("pifs_exhaustive"):
            row["pifs_exhaustive"] = pifs_curve(x, "exhaustive", PIFS_EXHAUSTIVE_RMS, torch.device("cpu"), {}, repeats)
        if with_sparse:
            # On the CPU like PIFS: the search has not been tuned for an accelerator.
            row["sparse"] = sparse_curve(x, SPARSE_LAMBDAS, torch.device("cpu"), repeats=repeats)
            row["anchors"][SPARSE] = [(r["bpp"], r["psnr_db"]) for r in row["sparse"]]
        rows.append(row)
        nc = "  ".join(f"{n}: {p['bpp']:.3f} bpp {p['psnr_db']:.2f} dB ({p['encode_s']:.2f}/{p['decode_s']:.2f} s)" for n, p in row["neural"].items())
        print(f"{path.name}: {nc}", flush=True)

    summary, tables = summarise(rows, models, list(rows[0]["anchors"]))
    summary.update(data=str(ctx.data), images_option=images or "all", wall_s=round(time.perf_counter() - started, 1))
    if images == "validation":
        summary["models_not_holding_out_the_split"] = [m for m, entry in loaded.items() if not _held_out(entry.metadata)]
    markdown = render(name, summary, tables, repeats)
    write_results(ctx, name, markdown, {"summary": summary, "tables": tables, "images": rows})
    plot(rows, ctx.out / f"{name}.png", Path(ctx.data).name + (f", {images}" if images else ""))
    return {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}


def _held_out(metadata: dict[str, str]) -> bool:
    """Whether a model's training record says it skipped the validation split (``image_train``'s ``held_out``)."""
    try:
        return int(json.loads(metadata.get("made_by", "{}")).get("held_out", 0)) > 0
    except (ValueError, TypeError, AttributeError):
        return False


def _curves(row: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Every codec's (bpp, PSNR) curve on one image; Neural Collage's runs through the models."""
    return {NEURAL: [(p["bpp"], p["psnr_db"]) for p in row["neural"].values()], **row["anchors"]}


def _mean_curve(rows: list[dict[str, Any]], codec: str) -> list[tuple[float, float]]:
    """The set's mean (bpp, PSNR) at each setting of ``codec`` (every image has every setting)."""
    per_image = [_curves(r)[codec] for r in rows]
    return [(statistics.mean(c[i][0] for c in per_image), statistics.mean(c[i][1] for c in per_image)) for i in range(len(per_image[0]))]


def _bd(anchor: list[tuple[float, float]], test: list[tuple[float, float]]) -> dict[str, float | None]:
    psnr, rate = bd_psnr(anchor, test, BD_WINDOW), bd_rate(anchor, test, BD_WINDOW)
    return {"bd_psnr_db": None if psnr is None else round(psnr, 4), "bd_rate_pct": None if rate is None else round(rate, 3)}


def bd_table(rows: list[dict[str, Any]], anchor: str, test: str) -> dict[str, Any]:
    """``test`` against ``anchor``: per-image BD-PSNR and BD-rate, their means (with counts), and the
    same on the set's mean curves."""
    per_image = [_bd(_curves(r)[anchor], _curves(r)[test]) for r in rows]
    psnrs = [b["bd_psnr_db"] for b in per_image if b["bd_psnr_db"] is not None]
    rates = [b["bd_rate_pct"] for b in per_image if b["bd_rate_pct"] is not None]
    of_means = _bd(_mean_curve(rows, anchor), _mean_curve(rows, test))
    return {
        "bd_psnr_db": _mean(psnrs), "bd_psnr_images": len(psnrs),
        "bd_rate_pct": _mean(rates), "bd_rate_images": len(rates),
        "curve_of_means_bd_psnr_db": of_means["bd_psnr_db"], "curve_of_means_bd_rate_pct": of_means["bd_rate_pct"],
        "per_image": {r["image"]: b for r, b in zip(rows, per_image)},
    }


def fixed_rate_table(rows: list[dict[str, Any]], codecs: list[str]) -> dict[str, Any]:
    """PSNR at each target rate: every codec's mean over the images that all codecs reaching the rate on
    some image reach there (a codec that reaches it on none would leave no image to compare on), each
    codec's own count, and each codec's mean over the images it reaches itself."""
    table: dict[str, Any] = {}
    for t in TARGETS:
        values = {c: [at_rate(_curves(r)[c], t) for r in rows] for c in codecs}
        reaching = [c for c in codecs if any(v is not None for v in values[c])]
        common = [i for i in range(len(rows)) if all(values[c][i] is not None for c in reaching)]
        table[f"{t:.2f}"] = {
            "common_images": len(common),
            "mean_over_common": {c: _mean(values[c][i] for i in common) if c in reaching else None for c in codecs},
            "reached": {c: sum(v is not None for v in values[c]) for c in codecs},
            "mean_over_reached": {c: _mean(values[c]) for c in codecs},
        }
    return table


def summarise(rows: list[dict[str, Any]], models: list[str], anchors: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    codecs = [NEURAL, *anchors]
    bd = {anchor: bd_table(rows, anchor, NEURAL) for anchor in anchors}
    bd_sparse = {anchor: bd_table(rows, anchor, SPARSE) for anchor in [NEURAL, *anchors] if anchor != SPARSE} if SPARSE in anchors else {}
    vs_jpeg = {c: bd_table(rows, "jpeg", c) for c in codecs if c != "jpeg"} if "jpeg" in anchors else {}
    fixed = fixed_rate_table(rows, codecs)
    per_model = []
    for name in models:
        points = [r["neural"][name] for r in rows]
        entry: dict[str, Any] = {
            "model": name,
            "bpp": _mean(p["bpp"] for p in points),
            "psnr_db": _mean(p["psnr_db"] for p in points),
            "encode_s_median": round(statistics.median(p["encode_s"] for p in points), 3),
            "encode_s_max": round(max(p["encode_s"] for p in points), 3),
            "decode_s_median": round(statistics.median(p["decode_s"] for p in points), 3),
            "decode_s_max": round(max(p["decode_s"] for p in points), 3),
        }
        for anchor in anchors:
            # Matched bpp: each anchor's curve read at this image's Neural Collage bpp.
            entry[f"{anchor}_psnr_at_matched_bpp"] = _mean(at_rate(r["anchors"][anchor], r["neural"][name]["bpp"]) for r in rows)
        if "pifs" in anchors:
            speed = []
            for r in rows:
                timing = [(p["psnr_db"], p["encode_s"]) for p in r["pifs"]]
                pifs_s = _interp_time(timing, r["neural"][name]["psnr_db"])
                if pifs_s is not None:
                    speed.append((pifs_s, r["neural"][name]["encode_s"]))
            entry["pifs_encode_s_at_equal_psnr"] = _mean(s for s, _ in speed)
            entry["pifs_images_at_equal_psnr"] = len(speed)
        per_model.append(entry)
    summary: dict[str, Any] = {
        "images": len(rows),
        "bd_window_bpp": list(BD_WINDOW),
        **{f"bd_psnr_vs_{a}": bd[a]["bd_psnr_db"] for a in anchors},
        **{f"bd_rate_vs_{a}": bd[a]["bd_rate_pct"] for a in anchors},
        **{f"sparse_bd_psnr_vs_{a}": b["bd_psnr_db"] for a, b in bd_sparse.items()},
        **{f"sparse_bd_rate_vs_{a}": b["bd_rate_pct"] for a, b in bd_sparse.items()},
    }
    if bd_sparse:
        for search in ("pifs", "pifs_exhaustive"):
            ratios = sparse_speedup(rows, search)
            if ratios:
                summary[f"sparse_speedup_vs_{search}"] = round(statistics.median(ratios), 2)
                summary[f"sparse_speedup_vs_{search}_points"] = len(ratios)
                summary[f"sparse_speedup_vs_{search}_images"] = sum(search in r for r in rows)
        points = [p for r in rows for p in r["sparse"]]
        summary["sparse_encode_s_median"] = round(statistics.median(p["encode_s"] for p in points), 3)
        summary["sparse_encode_s_max"] = round(max(p["encode_s"] for p in points), 3)
        summary["sparse_decode_s_median"] = round(statistics.median(p["decode_s"] for p in points), 3)
        summary["sparse_decode_s_max"] = round(max(p["decode_s"] for p in points), 3)
    for t in TARGETS:
        key = f"{t:.2f}"
        summary[f"psnr_at_{key}"] = fixed[key]["mean_over_reached"][NEURAL]
        summary[f"images_at_{key}"] = fixed[key]["reached"][NEURAL]
        summary[f"psnr_at_{key}_common"] = fixed[key]["mean_over_common"][NEURAL]
        summary[f"common_images_at_{key}"] = fixed[key]["common_images"]
    summary["encode_s_median"] = per_model[0]["encode_s_median"] if per_model else None
    summary["decode_s_median"] = per_model[0]["decode_s_median"] if per_model else None
    return summary, {"bd": bd, "bd_sparse": bd_sparse, "bd_vs_jpeg": vs_jpeg, "fixed_rate": fixed, "models": per_model}


def sparse_speedup(rows: list[dict[str, Any]], search: str) -> list[float]:
    """Per sparse-collage point whose PSNR a PIFS sweep (``search``: the row's key) spans: PIFS's encode
    seconds interpolated at that PSNR over sparse-collage's."""
    ratios = []
    for r in rows:
        if search not in r:
            continue
        timing = [(p["psnr_db"], p["encode_s"]) for p in r[search]]
        for point in r["sparse"]:
            pifs_s = _interp_time(timing, point["psnr_db"])
            if pifs_s is not None:
                ratios.append(pifs_s / point["encode_s"])
    return ratios


def _interp_time(points: list[tuple[float, float]], psnr_db: float) -> float | None:
    """PIFS encode seconds at ``psnr_db``, interpolated linearly in log-time between sweep points."""
    pts = sorted(points)
    for (p0, t0), (p1, t1) in zip(pts, pts[1:]):
        if p0 <= psnr_db <= p1 and p1 > p0:
            w = (psnr_db - p0) / (p1 - p0)
            return math.exp(math.log(t0) + w * (math.log(t1) - math.log(t0)))
    return None


def _label(codec: str) -> str:
    return LABELS.get(codec, codec)


def _signed(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, "+" + spec)


def render(name: str, summary: dict[str, Any], tables: dict[str, Any], repeats: int) -> str:
    n = summary["images"]
    lo, hi = summary["bd_window_bpp"]
    option = summary["images_option"]
    lines = [
        f"# {name}: Neural Collage image codec on {n} images",
        "",
        f"`collagekit bench kodak` on {n} images of `{summary['data']}`" + (f" (`images={option}`)" if option != "all" else "")
        + f", {summary['wall_s']:.0f} s in all (device, threads and load: Conditions below).",
        "bpp = file bytes x 8 / pixels; PSNR on the decoded file, 8-bit RGB, whole image (DESIGN section 4); times: median of",
        f"{repeats} run(s) per image after an untimed warm-up. Neural Collage: one curve per image through the models below.",
        "",
    ]
    if summary.get("models_not_holding_out_the_split"):
        lines += [
            f"**In-sample for {', '.join(summary['models_not_holding_out_the_split'])}**: their training record does not show the validation "
            "split held out (they predate it), so they may have trained on these images.",
            "",
        ]
    lines += [
        f"## Bjøntegaard deltas of Neural Collage against each anchor ({lo:g}-{hi:g} bpp)",
        "",
        f"PCHIP interpolation (`collagekit.bjontegaard`), per image over the bpp interval both curves cover within {lo:g}-{hi:g} bpp,",
        "then the mean over the images where that interval exists (the headline, with the count); \"curve of means\": the same",
        "computed once on the set's mean curves. BD-PSNR > 0 and BD-rate < 0: Neural Collage is better.",
        "",
        "| anchor | BD-PSNR (dB) | BD-rate (%) | images (PSNR / rate) | curve of means: BD-PSNR | BD-rate |",
        "|---|---|---|---|---|---|",
    ]
    for anchor, b in tables["bd"].items():
        lines.append(
            f"| {_label(anchor)} | {_signed(b['bd_psnr_db'], '.2f')} | {_signed(b['bd_rate_pct'], '.1f')} | {b['bd_psnr_images']} / {b['bd_rate_images']} | "
            f"{_signed(b['curve_of_means_bd_psnr_db'], '.2f')} | {_signed(b['curve_of_means_bd_rate_pct'], '.1f')} |"
        )
    if tables["bd_sparse"]:
        lines += [
            "", f"## Bjøntegaard deltas of sparse-collage against each codec ({lo:g}-{hi:g} bpp)", "",
            f"The search codec over its lmbda ladder {', '.join(f'{v:g}' for v in SPARSE_LAMBDAS)}; the same method. Encode "
            f"{summary['sparse_encode_s_median']:.2f} s median ({summary['sparse_encode_s_max']:.2f} max), decode "
            f"{summary['sparse_decode_s_median']:.2f} s median ({summary['sparse_decode_s_max']:.2f} max) per image and point (each the median of {repeats} run(s)), on the CPU.",
            *[
                f"Encode at equal PSNR: PIFS's {'exhaustive' if s == 'pifs_exhaustive' else 'nearest-neighbour'} search takes "
                f"{summary[f'sparse_speedup_vs_{s}']:.1f}x sparse-collage's time (median over {summary[f'sparse_speedup_vs_{s}_points']} points "
                f"of {summary[f'sparse_speedup_vs_{s}_images']} images)."
                for s in ("pifs", "pifs_exhaustive") if f"sparse_speedup_vs_{s}" in summary
            ],
            "",
            "| against | BD-PSNR (dB) | BD-rate (%) | images (PSNR / rate) | curve of means: BD-PSNR | BD-rate |",
            "|---|---|---|---|---|---|",
        ]
        for anchor, b in tables["bd_sparse"].items():
            lines.append(
                f"| {_label(anchor)} | {_signed(b['bd_psnr_db'], '.2f')} | {_signed(b['bd_rate_pct'], '.1f')} | {b['bd_psnr_images']} / {b['bd_rate_images']} | "
                f"{_signed(b['curve_of_means_bd_psnr_db'], '.2f')} | {_signed(b['curve_of_means_bd_rate_pct'], '.1f')} |"
            )
    if tables["bd_vs_jpeg"]:
        lines += ["", "## Every codec against JPEG (same method, for scale)", "",
                  "| codec | BD-PSNR (dB) | BD-rate (%) | images (PSNR / rate) |", "|---|---|---|---|"]
        for codec, b in tables["bd_vs_jpeg"].items():
            lines.append(f"| {_label(codec)} | {_signed(b['bd_psnr_db'], '.2f')} | {_signed(b['bd_rate_pct'], '.1f')} | {b['bd_psnr_images']} / {b['bd_rate_images']} |")
    fixed = tables["fixed_rate"]
    keys = list(fixed)
    common = ", ".join(f"{fixed[k]['common_images']}/{n} at {k} bpp" for k in keys)
    lines += [
        "", "## PSNR (dB) at fixed rates", "",
        "Each curve interpolated in log-bpp, never extrapolated. Means over the images that every codec below reaches at that rate "
        f"({common}; a codec that reaches the rate on no image is left out of that set); beside each, how many images that codec reaches.",
        "",
        "| codec | " + " | ".join(f"@{k} bpp | reaches" for k in keys) + " |",
        "|---|" + "---|---|" * len(keys),
    ]
    for codec in fixed[keys[0]]["reached"]:
        cells = " | ".join(f"{_fmt(fixed[k]['mean_over_common'][codec])} | {fixed[k]['reached'][codec]}/{n}" for k in keys)
        lines.append(f"| {_label(codec)} | {cells} |")
    own = ", ".join(f"{_fmt(fixed[k]['mean_over_reached'][NEURAL])} dB at {k} bpp ({fixed[k]['reached'][NEURAL]}/{n} images)" for k in keys)
    lines += ["", f"Neural Collage over every image it reaches itself: {own}."]
    anchors = list(tables["bd"])
    lines += [
        "", "## Per model (means over images; anchors at each image's Neural Collage bpp)", "",
        "| model | bpp | PSNR | encode s (median/max) | decode s (median/max) | " + " | ".join(_label(a) for a in anchors) + " |",
        "|---|---|---|---|---|" + "---|" * len(anchors),
    ]
    for m in tables["models"]:
        cells = [_fmt(m.get(f"{a}_psnr_at_matched_bpp")) for a in anchors]
        lines.append(
            f"| {m['model']} | {m['bpp']:.3f} | {m['psnr_db']:.2f} | {m['encode_s_median']:.2f} / {m['encode_s_max']:.2f} | "
            f"{m['decode_s_median']:.2f} / {m['decode_s_max']:.2f} | " + " | ".join(cells) + " |"
        )
    if any("pifs_encode_s_at_equal_psnr" in m for m in tables["models"]):
        lines += ["", "## Encode time at equal PSNR: Neural Collage vs PIFS (nearest-neighbour search)", "",
                  "| model | Neural Collage encode s | PIFS encode s at the same PSNR | images compared |", "|---|---|---|---|"]
        for m in tables["models"]:
            lines.append(f"| {m['model']} | {m['encode_s_median']:.2f} | {_fmt(m.get('pifs_encode_s_at_equal_psnr'))} | {m.get('pifs_images_at_equal_psnr', 0)} |")
    lines += ["", f"![rate-distortion]({name}.png)", ""]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Mean (bpp, PSNR) per quality setting of every codec; skipped (with a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no rate-distortion plot")
        return
    from collagekit.fileio import atomic_output

    fig, ax = plt.subplots(figsize=(7, 5))
    curves = {codec: sorted(_mean_curve(rows, codec)) for codec in [NEURAL, *rows[0]["anchors"]]}
    for codec, curve in curves.items():
        style = {"marker": "o", "lw": 2.5, "color": "black"} if codec == NEURAL else {"marker": ".", "ls": "--"}
        ax.plot(*zip(*curve), label=_label(codec) + (" (collagekit)" if codec == NEURAL else ""), **style)
    shown = [q for curve in curves.values() for r, q in curve if r <= 1.05]  # the y range of what the x range shows
    ax.set_xlim(0, 1.0)
    ax.set_ylim(min(shown) - 0.5, max(shown) + 0.5)
    ax.set_xlabel("bits per pixel (file bytes x 8 / pixels)")
    ax.set_ylabel("PSNR (dB, RGB)")
    ax.set_title(f"{title}: mean of {len(rows)} images per setting")
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


