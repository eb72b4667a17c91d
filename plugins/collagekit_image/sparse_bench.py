"""``collagekit bench sparse-collage``: settings of the sparse-collage codec side by side, each judged by
its Bjøntegaard deltas against JPEG and PIFS on the validation split (DESIGN section 4: design decisions
are taken there, never on Kodak).

Every variant is the codec's defaults with some options changed (``variants="base;domain_stride=1;
bias_step=4.0"``: variants apart by ``;``, options within one apart by ``,``; ``base`` is the defaults),
swept over the lmbda ladder of ``collagekit bench kodak``. Per variant: the mean over images of the
per-image BD-PSNR and BD-rate (PCHIP, 0.1-1 bpp) against Pillow JPEG (``optimize=True``) and PIFS
(nearest-neighbour search, its RMS sweep), the mean bpp and PSNR at each lmbda, and the median encode
and decode seconds (each the median of ``repeats`` runs, one by default, after an untimed warm-up).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from collagekit_pifs.bench import pifs_curve

from collagekit.bench import BenchContext, write_results
from collagekit.errors import CollagekitError
from collagekit_image.kodak import (
    PIFS_RMS,
    SPARSE_LAMBDAS,
    _bd,
    _rgb,
    anchor_curve,
    image_paths,
    sparse_curve,
)

ANCHORS = ("jpeg", "pifs")


def parse_variants(text: str) -> dict[str, dict[str, Any]]:
    """``"base;domain_stride=1,dihedral=true"`` -> name -> codec options (values as YAML scalars)."""
    import yaml

    variants: dict[str, dict[str, Any]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        if part == "base":
            variants[part] = {}
            continue
        options = {}
        for item in part.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise CollagekitError(f"variant {part!r}: write options as key=value, apart by commas")
            options[key.strip()] = yaml.safe_load(value)
        variants[part] = options
    if not variants:
        raise CollagekitError("variants names no variant")
    return variants


def run(ctx: BenchContext) -> dict[str, Any]:
    started = time.perf_counter()
    variants = parse_variants(ctx.option("variants"))
    given = ctx.option("lambdas")
    lambdas = tuple(float(v) for v in str(given).split(",")) if given is not None else SPARSE_LAMBDAS
    paths = image_paths(Path(ctx.data), ctx.option("images"))[: ctx.option("limit")]
    if not paths:
        raise CollagekitError(f"no image files in {ctx.data}")
    cpu = torch.device("cpu")  # the search runs on the CPU, like PIFS's
    warm = _rgb(paths[0])[1][..., :128, :128]
    for options in variants.values():
        sparse_curve(warm, lambdas[:1], cpu, options)  # untimed; also refuses bad options before the long run
    rows = []
    for path in paths:
        image, x = _rgb(path)
        row: dict[str, Any] = {"image": path.name, "jpeg": anchor_curve(image, "jpeg"),
                               "pifs": [(r["bpp"], r["psnr_db"]) for r in pifs_curve(x, "nearest", PIFS_RMS, cpu, {})], "variants": {}}  # fmt: skip
        for name, options in variants.items():
            points = sparse_curve(x, lambdas, cpu, options, ctx.option("repeats"))
            curve = [(p["bpp"], p["psnr_db"]) for p in points]
            row["variants"][name] = {"points": points, **{f"vs_{a}": _bd(row[a], curve) for a in ANCHORS}}
        rows.append(row)
        print(f"{path.name}: " + "  ".join(f"{n}: {v['vs_jpeg']['bd_psnr_db']} / {v['vs_pifs']['bd_psnr_db']} dB" for n, v in row["variants"].items()), flush=True)
    table = {name: summarise(rows, name) for name in variants}
    summary = {"images": len(rows), "images_option": ctx.option("images") or "all", "lambdas": list(lambdas), "repeats": ctx.option("repeats"),
               "wall_s": round(time.perf_counter() - started, 1)}
    name = ctx.option("results")
    write_results(ctx, name, render(name, summary, table, variants), {"summary": summary, "variants": table, "images": rows})
    return {f"{v}: bd_psnr_vs_{a}": table[v][f"vs_{a}"]["bd_psnr_db"] for v in variants for a in ANCHORS}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.mean(values), 3) if values else None


def summarise(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in ANCHORS:
        bd = [r["variants"][name][f"vs_{a}"] for r in rows]
        psnr = [b["bd_psnr_db"] for b in bd if b["bd_psnr_db"] is not None]
        rate = [b["bd_rate_pct"] for b in bd if b["bd_rate_pct"] is not None]
        out[f"vs_{a}"] = {"bd_psnr_db": _mean(psnr), "bd_psnr_images": len(psnr), "bd_rate_pct": _mean(rate), "bd_rate_images": len(rate)}
    points = [r["variants"][name]["points"] for r in rows]
    out["ladder"] = [{"bpp": _mean(p[i]["bpp"] for p in points), "psnr_db": _mean(p[i]["psnr_db"] for p in points)} for i in range(len(points[0]))]
    flat = [q for p in points for q in p]
    out["encode_s_median"] = round(statistics.median(q["encode_s"] for q in flat), 3)
    out["decode_s_median"] = round(statistics.median(q["decode_s"] for q in flat), 3)
    return out


def render(name: str, summary: dict[str, Any], table: dict[str, Any], variants: dict[str, dict[str, Any]]) -> str:
    n = summary["images"]
    lines = [
        f"# {name}: sparse-collage settings on {n} images ({summary['images_option']})", "",
        "Each variant: the codec's defaults with the options shown, swept over lmbda "
        f"{', '.join(f'{v:g}' for v in summary['lambdas'])}. BD-PSNR / BD-rate: mean over images of the per-image "
        "Bjøntegaard deltas (PCHIP, 0.1-1 bpp; > 0 dB / < 0 %: the variant is better), with the image counts. "
        f"Times: median over every image and lmbda, each the median of {summary['repeats']} run(s), one process; {summary['wall_s']:.0f} s in all.", "",
        "| variant | vs JPEG: BD-PSNR (dB) | BD-rate (%) | vs PIFS: BD-PSNR (dB) | BD-rate (%) | images | encode s | decode s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v, t in table.items():
        j, p = t["vs_jpeg"], t["vs_pifs"]
        lines.append(f"| {v} | {j['bd_psnr_db']:+.2f} | {j['bd_rate_pct']:+.1f} | {p['bd_psnr_db']:+.2f} | {p['bd_rate_pct']:+.1f} | "
                     f"{j['bd_psnr_images']} / {p['bd_psnr_images']} | {t['encode_s_median']:.2f} | {t['decode_s_median']:.2f} |")  # fmt: skip
    lines += ["", "Mean bpp / PSNR (dB) at each lmbda:", "", "| variant | " + " | ".join(f"{v:g}" for v in summary["lambdas"]) + " |",
              "|---|" + "---|" * len(summary["lambdas"])]  # fmt: skip
    for v, t in table.items():
        lines.append(f"| {v} | " + " | ".join(f"{p['bpp']:.3f} / {p['psnr_db']:.2f}" for p in t["ladder"]) + " |")
    return "\n".join(lines) + "\n"
