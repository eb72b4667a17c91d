"""``collagekit bench pifs``: PIFS rate-distortion, speed, search comparison and JPEG reference on Kodak.

* Grey: 512x512 centre crops of kodim01/05/15/23 (converted to 8-bit grey). Per image and search
  (``searches=exhaustive,classified,nearest``; the last is the fast one, the first the reference) a
  sweep of RMS targets gives (bpp, PSNR) points; PSNR at 0.5 bpp is interpolated in log-bpp (DESIGN
  section 4), as is JPEG's (Pillow, ``optimize=True``, quality sweep). The fast search sweeps every
  target, the others only the targets that bracket 0.5 bpp. Encode time: every search at the fast
  search's sweep point nearest 0.5 bpp (same RMS target), median of ``repeats`` runs after an untimed
  warm-up, as wall-clock and as process CPU time (the latter is less disturbed by other jobs on a
  shared machine); decode time: median of ``repeats`` decodes of that file (entropy decoding + fixed
  point). Speed-up and PSNR loss of every search are taken against the first.
* Colour: the Kodak images (full size, RGB, YCbCr coding) with the fast search at a sweep of
  targets, PSNR at 0.5 bpp interpolated likewise, against JPEG; encode/decode times at the sweep
  point nearest 0.5 bpp. ``limit=N`` takes the first N images (``colour=0`` skips them).

bpp = file bytes x 8 / (H W), the whole .clg file.
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

GREY_IMAGES = ("kodim01", "kodim05", "kodim15", "kodim23")
CROP = 512
TARGET_BPP = 0.5
GREY_RMS = (4.5, 6.0, 8.0, 11.0, 15.0, 21.0, 30.0, 42.0)
COLOUR_RMS = (5.0, 8.0, 12.0, 18.0, 26.0, 38.0)
JPEG_QUALITIES = tuple(range(5, 100, 5))
SETTINGS = ("max_range", "min_range", "domain_stride", "s_max", "s_bits", "o_bits", "size_exponent", "chroma")


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


def pifs_curve(x: torch.Tensor, search: str, rms_values, device, extra: dict[str, Any], repeats: int = 1) -> list[dict[str, Any]]:
    """(1 c h w) -> one row per RMS target: bpp (file), PSNR (decoded saved file), encode seconds (the
    median of ``repeats`` runs)."""
    from collagekit.container import from_bytes, to_bytes
    from collagekit.metrics import psnr
    from collagekit_pifs.pifscodec import PifsCodec

    codec = PifsCodec()
    pixels = x.shape[2] * x.shape[3]
    rows = []
    for rms in rms_values:
        options = {"search": search, "rms": float(rms), **extra}
        encoded = median_time(lambda options=options: codec.encode(x, None, quality=None, device=device, options=options), repeats)
        data = to_bytes(encoded.result)
        decoded = codec.decode(from_bytes(data), None, scale=1, device=device, options={})
        rows.append({"rms": rms, "bpp": len(data) * 8 / pixels, "psnr_db": psnr(x, decoded), "encode_s": encoded.seconds, "bytes": len(data)})
    return rows


def _timed_point(x, search: str, rms: float, device, repeats: int, extra: dict[str, Any]) -> dict[str, float]:
    """Median encode (wall and CPU) and decode seconds at one RMS target (warm: a sweep ran before)."""
    from collagekit.container import from_bytes, to_bytes
    from collagekit_pifs.pifscodec import PifsCodec

    codec = PifsCodec()
    options = {"search": search, "rms": float(rms), **extra}
    encode = median_time(lambda: to_bytes(codec.encode(x, None, quality=None, device=device, options=options)), repeats, device)
    data = encode.result
    decode = median_time(lambda: codec.decode(from_bytes(data), None, scale=1, device=device, options={}), repeats, device)
    return {"timed_rms": rms, "encode_s": encode.seconds, "encode_cpu_s": encode.cpu_seconds, "decode_s": decode.seconds, "decode_cpu_s": decode.cpu_seconds}


def _nearest(rows: list[dict[str, Any]], target: float) -> dict[str, Any]:
    return min(rows, key=lambda r: abs(math.log(r["bpp"] / target)))


def _psnr_at(curve: list[dict[str, Any]]) -> float | None:
    return at_rate([(r["bpp"], r["psnr_db"]) for r in curve], TARGET_BPP)


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.mean(values), 3) if values else None


def _bracketing_curve(x, search: str, fast_curve: list[dict[str, Any]], device, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """A slower search's points: the targets that bracket 0.5 bpp on the fast curve, widened one target
    at a time while this search's own points do not bracket it."""
    above = [r["rms"] for r in fast_curve if r["bpp"] >= TARGET_BPP]
    below = [r["rms"] for r in fast_curve if r["bpp"] < TARGET_BPP]
    rms_done = sorted({max(above, default=GREY_RMS[0]), min(below, default=GREY_RMS[-1])})
    curve = pifs_curve(x, search, rms_done, device, extra)
    for _ in range(3):
        if _psnr_at(curve) is not None:
            break
        low_rate = min(curve, key=lambda r: r["bpp"])["bpp"] > TARGET_BPP  # all above: coarser target
        options = [v for v in GREY_RMS if (v > max(rms_done) if low_rate else v < min(rms_done))]
        if not options:
            break
        nxt = min(options) if low_rate else max(options)
        rms_done.append(nxt)
        curve += pifs_curve(x, search, (nxt,), device, extra)
    return sorted(curve, key=lambda r: r["rms"])


def _grey(paths: list[Path], searches: list[str], device, repeats: int, extra: dict[str, Any]) -> list[dict[str, Any]]:
    fast = searches[-1]
    rows = []
    for path in paths:
        image = _load(path, grey=True)
        x = _tensor(image)
        row: dict[str, Any] = {"image": path.stem, "jpeg_psnr_at_0.5": at_rate(jpeg_curve(image), TARGET_BPP)}
        curves = {fast: pifs_curve(x, fast, GREY_RMS, device, extra)}
        for search in searches[:-1]:
            curves[search] = _bracketing_curve(x, search, curves[fast], device, extra)
        point = _nearest(curves[fast], TARGET_BPP)
        for search in searches:
            timing = _timed_point(x, search, point["rms"], device, repeats, extra)
            row[search] = {"psnr_at_0.5": _psnr_at(curves[search]), "curve": curves[search], **timing}
            print(f"{path.stem} {search}: {_fmt(row[search]['psnr_at_0.5'])} dB at 0.5 bpp (JPEG {_fmt(row['jpeg_psnr_at_0.5'])}), "
                  f"encode {timing['encode_s']:.3f} s (CPU {timing['encode_cpu_s']:.3f} s), decode {timing['decode_s'] * 1000:.0f} ms "
                  f"(at rms {point['rms']})", flush=True)
        rows.append(row)
    return rows


def _colour(paths: list[Path], search: str, device, repeats: int, extra: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        image = _load(path, grey=False)
        x = _tensor(image)
        curve = pifs_curve(x, search, COLOUR_RMS, device, extra)
        point = _nearest(curve, TARGET_BPP)
        row = {
            "image": path.stem,
            "search": search,
            "size": list(image.size),
            "psnr_at_0.5": _psnr_at(curve),
            "jpeg_psnr_at_0.5": at_rate(jpeg_curve(image), TARGET_BPP),
            "timed_bpp": point["bpp"],
            "timed_psnr_db": point["psnr_db"],
            **_timed_point(x, search, point["rms"], device, repeats, extra),
            "curve": curve,
        }
        print(f"{path.stem} colour: {_fmt(row['psnr_at_0.5'])} dB at 0.5 bpp (JPEG {_fmt(row['jpeg_psnr_at_0.5'])}), "
              f"encode {row['encode_s']:.3f} s, decode {row['decode_s'] * 1000:.0f} ms at {point['bpp']:.3f} bpp", flush=True)
        rows.append(row)
    return rows


def _summary(grey: list[dict[str, Any]], colour: list[dict[str, Any]], searches: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        # The load at the start is among the conditions write_results records; at the end it says
        # whether other jobs arrived while this ran.
        "load_average_end": round(os.getloadavg()[0], 2),
        "grey_images": len(grey),
        "jpeg_grey_psnr_at_0.5": _mean(r["jpeg_psnr_at_0.5"] for r in grey),
    }
    base = searches[0]
    for search in searches:
        summary[f"{search}_grey_psnr_at_0.5"] = _mean(r[search]["psnr_at_0.5"] for r in grey)
        summary[f"{search}_median_encode_s"] = round(statistics.median(r[search]["encode_s"] for r in grey), 3)
        summary[f"{search}_median_encode_cpu_s"] = round(statistics.median(r[search]["encode_cpu_s"] for r in grey), 3)
        summary[f"{search}_median_decode_ms"] = round(1000 * statistics.median(r[search]["decode_s"] for r in grey), 1)
        summary[f"{search}_median_decode_cpu_ms"] = round(1000 * statistics.median(r[search]["decode_cpu_s"] for r in grey), 1)
    for search in searches[1:]:
        summary[f"{search}_speedup"] = round(statistics.median(r[base]["encode_s"] / r[search]["encode_s"] for r in grey), 1)
        summary[f"{search}_speedup_cpu"] = round(statistics.median(r[base]["encode_cpu_s"] / r[search]["encode_cpu_s"] for r in grey), 1)
        a, b = summary[f"{base}_grey_psnr_at_0.5"], summary[f"{search}_grey_psnr_at_0.5"]
        summary[f"{search}_loss_db"] = None if a is None or b is None else round(a - b, 3)
    if colour:
        summary["colour_search"] = colour[0]["search"]
        summary["colour_images"] = len(colour)
        summary["colour_psnr_at_0.5"] = _mean(r["psnr_at_0.5"] for r in colour)
        summary["jpeg_colour_psnr_at_0.5"] = _mean(r["jpeg_psnr_at_0.5"] for r in colour)
        summary["colour_median_encode_s"] = round(statistics.median(r["encode_s"] for r in colour), 3)
        summary["colour_median_decode_ms"] = round(1000 * statistics.median(r["decode_s"] for r in colour), 1)
        summary["colour_median_decode_cpu_ms"] = round(1000 * statistics.median(r["decode_cpu_s"] for r in colour), 1)
    return summary


def _markdown(summary: dict[str, Any], grey, colour, searches: list[str], repeats: int) -> str:
    fast = searches[-1]
    lines = [
        "# pifs: classical PIFS fractal compression on Kodak",
        "",
        f"The command, CPU, threads and load at the start are under Conditions at the end; load average at the end {summary['load_average_end']}",
        "(a load above the CPU count means other jobs shared the machine: wall-clock times are then pessimistic;",
        "CPU times are the process's own). bpp = whole .clg file bytes x 8 / pixels; PSNR on the decoded saved",
        "file, 8-bit (DESIGN section 4); PSNR at 0.5 bpp interpolated in log-bpp over a sweep of RMS targets",
        f"(n/a: the sweep does not reach 0.5 bpp). JPEG: Pillow, optimize=True, quality sweep. Timings: median of {repeats}",
        f"runs after an untimed warm-up, every search at the {fast} sweep point nearest 0.5 bpp (same RMS target).",
        f"Speed-up and loss are against {searches[0]}; searches other than {fast} are swept only around 0.5 bpp.",
        "",
        "## Grey 512x512 centre crops",
        "",
        "| image | " + " | ".join(f"{s} PSNR@0.5 | {s} encode s (CPU s) | {s} decode ms (CPU ms)" for s in searches) + " | JPEG PSNR@0.5 |",
        "|---|" + "---|---|---|" * len(searches) + "---|",
    ]
    for r in grey:
        cells = " | ".join(
            f"{_fmt(r[s]['psnr_at_0.5'])} | {r[s]['encode_s']:.3f} ({r[s]['encode_cpu_s']:.3f}) | {r[s]['decode_s'] * 1000:.0f} ({r[s]['decode_cpu_s'] * 1000:.0f})"
            for s in searches
        )
        lines.append(f"| {r['image']} | {cells} | {_fmt(r['jpeg_psnr_at_0.5'])} |")
    lines += ["", "Summary:", ""]
    lines += [f"- {k}: {v}" for k, v in summary.items()]
    if colour:
        lines += [
            "",
            f"## Colour Kodak (full size, YCbCr, {colour[0]['search']} search)",
            "",
            "| image | PSNR@0.5 | JPEG PSNR@0.5 | timed point bpp | encode s (CPU s) | decode ms (CPU ms) |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['image']} | {_fmt(r['psnr_at_0.5'])} | {_fmt(r['jpeg_psnr_at_0.5'])} | {r['timed_bpp']:.3f} | "
            f"{r['encode_s']:.3f} ({r['encode_cpu_s']:.3f}) | {r['decode_s'] * 1000:.0f} ({r['decode_cpu_s'] * 1000:.0f}) |"
            for r in colour
        ]
    lines.append("")
    return "\n".join(lines)


def run(ctx: BenchContext) -> dict[str, Any]:
    torch.manual_seed(0)
    repeats, limit = ctx.option("repeats"), ctx.option("limit")
    searches = ctx.option("searches").split(",")
    from collagekit_pifs.search import SEARCHES

    unknown = [s for s in searches if s not in SEARCHES]
    if unknown or not searches or repeats < 1 or limit < 1:
        raise CollagekitError(f"pifs bench: searches must be from {', '.join(SEARCHES)}, repeats and limit >= 1 (got {searches}, {repeats}, {limit})")
    extra = {k[0]: v for k, v in ctx.overrides if len(k) == 1 and k[0] in SETTINGS}
    grey_paths = [ctx.data / f"{name}.png" for name in GREY_IMAGES]
    missing = [str(p) for p in grey_paths if not p.is_file()]
    if missing:
        raise CollagekitError(f"missing Kodak images: {', '.join(missing)}; pass --data DIR")
    grey_paths = grey_paths[: min(limit, len(grey_paths))]
    colour_paths = sorted(ctx.data.glob("kodim*.png"))[: limit if ctx.option("colour") else 0]
    device = ctx.device
    # Untimed warm-up: the first encode pays one-time costs (lazy imports, allocator, thread pool).
    warm = _tensor(_load(grey_paths[0], grey=True))
    for search in searches:
        pifs_curve(warm, search, (GREY_RMS[-2],), device, extra)

    grey = _grey(grey_paths, searches, device, repeats, extra)
    colour = _colour(colour_paths, searches[-1], device, repeats, extra)
    summary = _summary(grey, colour, searches)
    if extra:
        summary["settings"] = extra
    markdown = _markdown(summary, grey, colour, searches, repeats)
    write_results(ctx, "pifs", markdown, {"summary": summary, "grey": grey, "colour": colour})
    return summary

