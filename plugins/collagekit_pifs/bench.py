"""``collagekit bench pifs``: PIFS rate-distortion, speed, search comparison and JPEG reference on Kodak.

* Grey: 512x512 centre crops of kodim01/05/15/23 (converted to 8-bit grey). Per image and search
  (exhaustive, classified) a sweep of RMS targets gives (bpp, PSNR) points; PSNR at 0.5 bpp is
  interpolated in log-bpp (DESIGN section 4), as is JPEG's (Pillow, ``optimize=True``, quality sweep).
  Encode time: the sweep point nearest 0.5 bpp, median of ``repeats`` runs after an untimed warm-up;
  decode time: median of ``repeats`` decodes of that file (entropy decoding + fixed point).
* Colour: the Kodak images (full size, RGB, YCbCr coding) at a sweep of targets, PSNR at 0.5 bpp
  interpolated likewise, against JPEG. ``limit=N`` takes the first N images (``colour=0`` skips it).

bpp = file bytes x 8 / (H W), the whole .clg file.
"""

from __future__ import annotations

import io
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from collagekit.bench import Benchmark, BenchContext, write_results
from collagekit.errors import CollagekitError
from collagekit.metrics import at_rate

GREY_IMAGES = ("kodim01", "kodim05", "kodim15", "kodim23")
CROP = 512
TARGET_BPP = 0.5
GREY_RMS = (4.5, 6.0, 8.0, 11.0, 15.0, 21.0, 30.0, 42.0)
COLOUR_RMS = (5.0, 8.0, 12.0, 18.0, 26.0, 38.0)
JPEG_QUALITIES = tuple(range(5, 100, 5))


def _load(path: Path, grey: bool):
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("L" if grey else "RGB")
        if grey:
            w, h = image.size
            left, top = (w - CROP) // 2, (h - CROP) // 2
            image = image.crop((left, top, left + CROP, top + CROP))
        image.load()
    return image


def _tensor(image) -> torch.Tensor:
    array = np.asarray(image, dtype=np.float32) / 255.0
    t = torch.from_numpy(array)
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    return t[None].contiguous()


def jpeg_curve(image) -> list[tuple[float, float]]:
    from PIL import Image

    from collagekit.metrics import psnr_uint8

    reference = np.asarray(image)
    pixels = image.size[0] * image.size[1]
    points = []
    for q in JPEG_QUALITIES:
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=q, optimize=True)
        size = buf.tell()
        buf.seek(0)
        with Image.open(buf) as decoded:
            points.append((size * 8 / pixels, psnr_uint8(reference, np.asarray(decoded))))
    return points


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def pifs_curve(x: torch.Tensor, search: str, rms_values, device, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """(1 c h w) -> one row per RMS target: bpp (file), PSNR (decoded saved file), encode seconds."""
    from collagekit.container import from_bytes, to_bytes
    from collagekit.metrics import psnr
    from collagekit_pifs.pifscodec import PifsCodec

    codec = PifsCodec()
    pixels = x.shape[2] * x.shape[3]
    rows = []
    for rms in rms_values:
        options = {"search": search, "rms": float(rms), **extra}
        started = time.perf_counter()
        container = codec.encode(x, None, quality=None, device=device, options=options)
        seconds = time.perf_counter() - started
        data = to_bytes(container)
        decoded = codec.decode(from_bytes(data), None, scale=1, device=device, options={})
        rows.append({"rms": rms, "bpp": len(data) * 8 / pixels, "psnr_db": psnr(x, decoded), "encode_s": seconds, "bytes": len(data)})
    return rows


def _timed_point(x, search: str, rms: float, device, repeats: int, extra: dict[str, Any]) -> tuple[float, float]:
    """Median encode and decode seconds at one RMS target (warm: the sweep ran before)."""
    from collagekit.container import from_bytes, to_bytes
    from collagekit_pifs.pifscodec import PifsCodec

    codec = PifsCodec()
    options = {"search": search, "rms": float(rms), **extra}
    encode_s = _median_time(lambda: codec.encode(x, None, quality=None, device=device, options=options), repeats)
    data = to_bytes(codec.encode(x, None, quality=None, device=device, options=options))
    decode_s = _median_time(lambda: codec.decode(from_bytes(data), None, scale=1, device=device, options={}), repeats)
    return encode_s, decode_s


def _nearest(rows: list[dict[str, Any]], target: float) -> dict[str, Any]:
    return min(rows, key=lambda r: abs(math.log(r["bpp"] / target)))


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def run(ctx: BenchContext) -> dict[str, Any]:
    torch.manual_seed(0)
    repeats = int(ctx.option("repeats", 3))
    slow_repeats = int(ctx.option("slow_repeats", 1))
    limit = int(ctx.option("limit", 24))
    searches = str(ctx.option("searches", "exhaustive,classified")).split(",")
    extra = {k[0]: v for k, v in ctx.overrides if len(k) == 1 and k[0] in ("max_range", "min_range", "domain_stride", "s_max", "s_bits", "o_bits", "size_exponent", "chroma")}
    grey_paths = [ctx.data / f"{name}.png" for name in GREY_IMAGES]
    missing = [str(p) for p in grey_paths if not p.is_file()]
    if missing:
        raise CollagekitError(f"missing Kodak images: {', '.join(missing)}; pass --data DIR")
    grey_paths = grey_paths[: max(1, min(limit, len(grey_paths)))]
    device = ctx.device
    # Untimed warm-up: the first encode pays one-time costs (lazy imports, allocator, thread pool).
    warm = _tensor(_load(grey_paths[0], grey=True))
    for search in searches:
        pifs_curve(warm, search, (GREY_RMS[-2],), device, extra)

    fast, slow = searches[-1], searches[:-1]
    grey_rows = []
    for path in grey_paths:
        image = _load(path, grey=True)
        x = _tensor(image)
        jpeg = jpeg_curve(image)
        row: dict[str, Any] = {"image": path.stem, "jpeg_psnr_at_0.5": at_rate(jpeg, TARGET_BPP)}
        # The fast search sweeps every target; slower ones only the targets that bracket 0.5 bpp there
        # (widened one step at a time if their own points do not bracket it), to keep the run short.
        curves = {fast: pifs_curve(x, fast, GREY_RMS, device, extra)}
        point = _nearest(curves[fast], TARGET_BPP)
        above = [r["rms"] for r in curves[fast] if r["bpp"] >= TARGET_BPP]
        below = [r["rms"] for r in curves[fast] if r["bpp"] < TARGET_BPP]
        bracket = sorted({max(above, default=GREY_RMS[0]), min(below, default=GREY_RMS[-1])})
        for search in slow:
            rms_done = list(bracket)
            curve = pifs_curve(x, search, rms_done, device, extra)
            for _ in range(3):
                if at_rate([(r["bpp"], r["psnr_db"]) for r in curve], TARGET_BPP) is not None:
                    break
                low_rate = min(curve, key=lambda r: r["bpp"])["bpp"] > TARGET_BPP  # all above: coarser target
                options = [v for v in GREY_RMS if (v > max(rms_done) if low_rate else v < min(rms_done))]
                if not options:
                    break
                nxt = min(options) if low_rate else max(options)
                rms_done.append(nxt)
                curve += pifs_curve(x, search, (nxt,), device, extra)
            curves[search] = curve
        for search in searches:
            n = repeats if search == fast else slow_repeats
            encode_s, decode_s = _timed_point(x, search, point["rms"], device, n, extra)
            curve = sorted(curves[search], key=lambda r: r["rms"])
            row[search] = {
                "psnr_at_0.5": at_rate([(r["bpp"], r["psnr_db"]) for r in curve], TARGET_BPP),
                "curve": curve,
                "timed_rms": point["rms"],
                "encode_s": encode_s,
                "decode_s": decode_s,
            }
            print(f"{path.stem} {search}: {_fmt(row[search]['psnr_at_0.5'])} dB at 0.5 bpp (JPEG {_fmt(row['jpeg_psnr_at_0.5'])}), "
                  f"encode {encode_s:.2f} s, decode {decode_s * 1000:.0f} ms (at rms {point['rms']})")
        grey_rows.append(row)

    colour_rows = []
    colour_paths = sorted(ctx.data.glob("kodim*.png"))[: limit if int(ctx.option("colour", 1)) else 0]
    for path in colour_paths:
        image = _load(path, grey=False)
        x = _tensor(image)
        curve = pifs_curve(x, searches[-1], COLOUR_RMS, device, extra)
        row = {
            "image": path.stem,
            "search": searches[-1],
            "psnr_at_0.5": at_rate([(r["bpp"], r["psnr_db"]) for r in curve], TARGET_BPP),
            "jpeg_psnr_at_0.5": at_rate(jpeg_curve(image), TARGET_BPP),
            "encode_s": _nearest(curve, TARGET_BPP)["encode_s"],
            "curve": curve,
        }
        print(f"{path.stem} colour: {_fmt(row['psnr_at_0.5'])} dB at 0.5 bpp (JPEG {_fmt(row['jpeg_psnr_at_0.5'])})")
        colour_rows.append(row)

    def mean(values) -> float | None:
        values = [v for v in values if v is not None]
        return round(statistics.mean(values), 3) if values else None

    summary: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads(), "grey_images": len(grey_rows),
                               "jpeg_grey_psnr_at_0.5": mean(r["jpeg_psnr_at_0.5"] for r in grey_rows)}
    for search in searches:
        summary[f"{search}_grey_psnr_at_0.5"] = mean(r[search]["psnr_at_0.5"] for r in grey_rows)
        summary[f"{search}_median_encode_s"] = round(statistics.median(r[search]["encode_s"] for r in grey_rows), 3)
        summary[f"{search}_median_decode_ms"] = round(1000 * statistics.median(r[search]["decode_s"] for r in grey_rows), 1)
    if len(searches) == 2:
        base = searches[0]
        summary["speedup"] = round(statistics.median(r[base]["encode_s"] / r[fast]["encode_s"] for r in grey_rows), 1)
        a, b = summary[f"{base}_grey_psnr_at_0.5"], summary[f"{fast}_grey_psnr_at_0.5"]
        summary["search_loss_db"] = None if a is None or b is None else round(a - b, 3)
    if colour_rows:
        summary["colour_images"] = len(colour_rows)
        summary["colour_psnr_at_0.5"] = mean(r["psnr_at_0.5"] for r in colour_rows)
        summary["jpeg_colour_psnr_at_0.5"] = mean(r["jpeg_psnr_at_0.5"] for r in colour_rows)
        summary["colour_median_encode_s"] = round(statistics.median(r["encode_s"] for r in colour_rows), 3)
    if extra:
        summary["settings"] = extra

    lines = [
        "# pifs: classical PIFS fractal compression on Kodak",
        "",
        f"`collagekit bench pifs` on device {summary['device']} ({summary['threads']} threads). bpp = whole .clg file bytes x 8 / pixels;",
        "PSNR on the decoded saved file, 8-bit (DESIGN section 4); PSNR at 0.5 bpp interpolated in log-bpp over a",
        "sweep of RMS targets (n/a: the sweep does not reach 0.5 bpp). JPEG: Pillow, optimize=True, quality sweep.",
        f"Timings: median of {repeats} runs ({slow_repeats} for {', '.join(slow) or 'none'}) at the {fast} sweep point nearest",
        "0.5 bpp (same RMS target for every search), after an untimed warm-up. Slower searches are swept only",
        "around 0.5 bpp.",
        "",
        "## Grey 512x512 centre crops",
        "",
        "| image | " + " | ".join(f"{s} PSNR@0.5 | {s} encode (s) | {s} decode (ms)" for s in searches) + " | JPEG PSNR@0.5 |",
        "|---|" + "---|---|---|" * len(searches) + "---|",
    ]
    for r in grey_rows:
        cells = " | ".join(f"{_fmt(r[s]['psnr_at_0.5'])} | {r[s]['encode_s']:.2f} | {r[s]['decode_s'] * 1000:.0f}" for s in searches)
        lines.append(f"| {r['image']} | {cells} | {_fmt(r['jpeg_psnr_at_0.5'])} |")
    lines += ["", "Summary:", ""]
    lines += [f"- {k}: {v}" for k, v in summary.items()]
    if colour_rows:
        lines += ["", f"## Colour Kodak (full size, YCbCr, {searches[-1]} search)", "", "| image | PSNR@0.5 | JPEG PSNR@0.5 | encode (s) |", "|---|---|---|---|"]
        lines += [f"| {r['image']} | {_fmt(r['psnr_at_0.5'])} | {_fmt(r['jpeg_psnr_at_0.5'])} | {r['encode_s']:.2f} |" for r in colour_rows]
    lines.append("")
    write_results(ctx.out, "pifs", "\n".join(lines), {"summary": summary, "grey": grey_rows, "colour": colour_rows})
    return summary


PIFS_BENCH = Benchmark(
    name="pifs",
    description="PIFS on Kodak: bpp, PSNR at 0.5 bpp, encode/decode time, exhaustive vs classified search, JPEG",
    run=run,
    default_data="kodak",
)
