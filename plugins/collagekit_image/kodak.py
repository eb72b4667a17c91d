"""``collagekit bench kodak``: Neural Collage rate-distortion and speed on the 24 Kodak images, against
Pillow's JPEG, WebP, JPEG 2000 and AVIF and the PIFS baseline (DESIGN section 4).

* Neural Collage: every shipped quality (``nc-q*``), or ``models=a,b`` (names or paths). bpp = .clg
  file bytes x 8 / pixels; PSNR of the file decoded from its bytes, 8-bit, whole image. Encode and
  decode seconds: the median of ``repeats`` runs after one untimed warm-up encode and decode; decode
  includes entropy decoding.
* Anchors: Pillow JPEG (``optimize=True``), WebP (``method=6``), JPEG 2000 (``mct=1``, rate sweep),
  AVIF (if this Pillow has it), each swept over quality; PIFS via the ``pifs`` codec (``pifs=0`` skips
  it). Every codec's per-image curve is interpolated in log-bpp (a) at 0.15 and 0.30 bpp and (b) at the
  Neural Collage file's own bpp (matched-bpp comparison); means are over the images a curve brackets.
* Neural Collage vs PIFS encode time at equal PSNR: per image, the PIFS sweep's encode time
  interpolated (in log-time) at the Neural Collage PSNR.

Options: ``limit=N`` (first N images), ``repeats=R``, ``models=...``, ``anchors=jpeg,webp,...``, ``pifs=0``.
"""

from __future__ import annotations

import io
import math
import os
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from collagekit.bench import BenchContext, write_results
from collagekit.errors import CollagekitError
from collagekit.metrics import at_rate
from collagekit.timing import median_time
from collagekit_pifs.bench import pifs_curve

TARGETS = (0.15, 0.30)
SWEEPS: dict[str, tuple] = {  # quality settings reaching from below 0.1 bpp (where the codec can) to about 1 bpp
    "jpeg": (1, 3, 6, 10, 15, 25, 40, 60, 80),
    "webp": (0, 3, 10, 25, 45, 65, 85),
    "jpeg2000": (0.06, 0.1, 0.15, 0.22, 0.33, 0.5, 0.8, 1.2),  # target bpp -> compression ratio 24/bpp
    "avif": (0, 5, 15, 30, 45, 60, 80),
}
PIFS_RMS = (12.0, 20.0, 32.0, 50.0)


def _pillow_point(image, codec: str, setting) -> tuple[int, np.ndarray]:
    from PIL import Image

    buf = io.BytesIO()
    if codec == "jpeg":
        image.save(buf, "JPEG", quality=setting, optimize=True)
    elif codec == "webp":
        image.save(buf, "WEBP", quality=setting, method=6)
    elif codec == "jpeg2000":
        image.save(buf, "JPEG2000", quality_mode="rates", quality_layers=[24.0 / setting], mct=1, irreversible=True)
    elif codec == "avif":
        image.save(buf, "AVIF", quality=setting)
    size = buf.tell()
    buf.seek(0)
    with Image.open(buf) as decoded:
        return size, np.asarray(decoded.convert("RGB"))


def available_anchors() -> list[str]:
    from PIL import features

    have = {"jpeg": features.check("jpg"), "webp": features.check("webp"), "jpeg2000": features.check("jpg_2000"), "avif": features.check("avif")}
    return [name for name, ok in have.items() if ok]


def anchor_curve(image, codec: str) -> list[tuple[float, float]]:
    """(bpp, PSNR) of one Pillow codec over its quality sweep."""
    from collagekit.metrics import psnr_uint8

    reference = np.asarray(image)
    pixels = image.size[0] * image.size[1]
    return [(size * 8 / pixels, psnr_uint8(reference, decoded)) for size, decoded in (_pillow_point(image, codec, s) for s in SWEEPS[codec])]


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


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.mean(values), 3) if values else None


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def run(ctx: BenchContext) -> dict[str, Any]:
    from PIL import Image

    from collagekit_image.imageio import load_image
    from collagekit_image.pretrained import QUALITY_PREFIX, STORE

    paths = sorted(ctx.data.glob("kodim*.png"))[: ctx.option("limit")]
    if not paths:
        raise CollagekitError(f"no kodim*.png images in {ctx.data}")
    repeats = ctx.option("repeats")
    models = (ctx.option("models") or ",".join(f"{QUALITY_PREFIX}{q}" for q in STORE.qualities())).split(",")
    models = [m for m in models if m]
    if not models:
        raise CollagekitError("no Neural Collage model is installed; pass models=PATH[,PATH...]")
    anchors = [a for a in (ctx.option("anchors") or ",".join(available_anchors())).split(",") if a]
    unknown = sorted(set(anchors) - set(SWEEPS))
    if unknown:
        raise CollagekitError(f"unknown anchors {', '.join(unknown)}; choose from: {', '.join(SWEEPS)}")
    with_pifs = ctx.option("pifs")
    device = ctx.device
    for name in models:
        STORE.load(name)  # fail early on an unknown model
    # Untimed warm-up: the first encode/decode pays lazy imports and allocator growth.
    warm = load_image(paths[0], 1 << 26)[..., :256, :256]
    for name in models:
        neural_point(warm, name, device, 1)

    rows: list[dict[str, Any]] = []
    for path in paths:
        x = load_image(path, 1 << 26)
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.load()
        row: dict[str, Any] = {"image": path.stem, "neural": {}, "anchors": {}}
        for name in models:
            row["neural"][name] = neural_point(x, name, device, repeats)
        for anchor in anchors:
            row["anchors"][anchor] = anchor_curve(image, anchor)
        if with_pifs:
            row["pifs"] = pifs_curve(x, "nearest", PIFS_RMS, torch.device("cpu"), {})
            row["anchors"]["pifs"] = [(r["bpp"], r["psnr_db"]) for r in row["pifs"]]
        rows.append(row)
        nc = "  ".join(f"{n}: {p['bpp']:.3f} bpp {p['psnr_db']:.2f} dB ({p['encode_s']:.2f}/{p['decode_s']:.2f} s)" for n, p in row["neural"].items())
        print(f"{path.stem}: {nc}", flush=True)

    summary, tables = summarise(rows, models, [*anchors, *(["pifs"] if with_pifs else [])], device)
    markdown = render(summary, tables, len(rows), repeats, device)
    write_results(ctx.out, "kodak", markdown, {"summary": summary, "tables": tables, "images": rows})
    plot(rows, models, summary, ctx.out / "kodak.png")
    return {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}


def summarise(rows: list[dict[str, Any]], models: list[str], anchors: list[str], device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    neural_curves = {r["image"]: [(p["bpp"], p["psnr_db"]) for p in r["neural"].values()] for r in rows}
    at_targets: dict[str, dict[str, float | None]] = {}
    bracketed: dict[str, dict[str, int]] = {}  # how many images' curves reach each rate
    for t in TARGETS:
        for codec in ["neural-collage", *anchors]:
            values = [at_rate(neural_curves[r["image"]] if codec == "neural-collage" else r["anchors"][codec], t) for r in rows]
            at_targets.setdefault(codec, {})[f"{t:.2f}"] = _mean(values)
            bracketed.setdefault(codec, {})[f"{t:.2f}"] = sum(v is not None for v in values)
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
    summary = {
        "images": len(rows),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "psnr_at_0.15": at_targets["neural-collage"]["0.15"],
        "psnr_at_0.30": at_targets["neural-collage"]["0.30"],
        "encode_s_median": per_model[0]["encode_s_median"] if per_model else None,
        "decode_s_median": per_model[0]["decode_s_median"] if per_model else None,
    }
    return summary, {"at_targets": at_targets, "bracketed": bracketed, "models": per_model}


def _interp_time(points: list[tuple[float, float]], psnr_db: float) -> float | None:
    """PIFS encode seconds at ``psnr_db``, interpolated linearly in log-time between sweep points."""
    pts = sorted(points)
    for (p0, t0), (p1, t1) in zip(pts, pts[1:]):
        if p0 <= psnr_db <= p1 and p1 > p0:
            w = (psnr_db - p0) / (p1 - p0)
            return math.exp(math.log(t0) + w * (math.log(t1) - math.log(t0)))
    return None


def _counted(value: float | None, count: int, images: int) -> str:
    return _fmt(value) if count == images else f"{_fmt(value)} ({count}/{images} images)"


def render(summary: dict[str, Any], tables: dict[str, Any], images: int, repeats: int, device: torch.device) -> str:
    at = tables["at_targets"]
    anchors = [a for a in at if a != "neural-collage"]
    lines = [
        "# kodak: Neural Collage image codec on the 24 Kodak images",
        "",
        f"`collagekit bench kodak` on {images} images, device {device}, {summary['threads']} torch threads "
        f"({summary['cpu_count']} CPUs). bpp = .clg file bytes x 8 / pixels; PSNR on the decoded file, 8-bit,",
        f"whole image (DESIGN section 4); times: median of {repeats} run(s) per image after an untimed warm-up.",
        "Curves are interpolated per image in log-bpp; a mean covers the images whose curve reaches the rate (counted when not all).",
        "",
        "## PSNR (dB) at fixed rates",
        "",
        "| codec | @0.15 bpp | @0.30 bpp |",
        "|---|---|---|",
        *(f"| {name} | {_counted(v['0.15'], n['0.15'], images)} | {_counted(v['0.30'], n['0.30'], images)} |"
          for (name, v), n in zip(at.items(), tables["bracketed"].values())),
        "",
        "## Per shipped model (means over images; anchors at each image's Neural Collage bpp)",
        "",
        "| model | bpp | PSNR | encode s (median/max) | decode s (median/max) | " + " | ".join(anchors) + " |",
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
    lines += ["", "![rate-distortion](kodak.png)", ""]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], models: list[str], summary: dict[str, Any], path: Path) -> None:
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
    nc = [(statistics.mean(r["neural"][m]["bpp"] for r in rows), statistics.mean(r["neural"][m]["psnr_db"] for r in rows)) for m in models]
    ax.plot(*zip(*sorted(nc)), "o-", lw=2.5, color="black", label="Neural Collage (collagekit)")
    for anchor in rows[0]["anchors"]:
        n = len(rows[0]["anchors"][anchor])
        pts = [(statistics.mean(r["anchors"][anchor][i][0] for r in rows), statistics.mean(r["anchors"][anchor][i][1] for r in rows)) for i in range(n)]
        ax.plot(*zip(*sorted(pts)), ".--", label=anchor.upper() if anchor != "jpeg2000" else "JPEG 2000")
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("bits per pixel (file bytes x 8 / pixels)")
    ax.set_ylabel("PSNR (dB, RGB)")
    ax.set_title(f"Kodak ({len(rows)} images)")
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)

