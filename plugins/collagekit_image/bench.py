"""``collagekit bench image-fit``: fractalization fits on 256x256 centre crops of the Kodak images."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from collagekit.bench import BenchContext, write_results
from collagekit.errors import CollagekitError

CROP = 256


def _centre_crop(path: Path, out: Path, size: int) -> None:
    from PIL import Image

    with Image.open(path) as image:
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image.convert("RGB").crop((left, top, left + size, top + size)).save(out)


def run(ctx: BenchContext) -> dict[str, Any]:
    from collagekit.recipe import override, validate_data
    from collagekit.registry import get_registry
    from collagekit.tasks import run_task

    registry = get_registry()
    images = sorted(ctx.data.glob("kodim*.png"))[: ctx.option("limit")]
    if not images:
        raise CollagekitError(f"no kodim*.png images in {ctx.data}")
    settings = [(path, value) for path, value in ctx.overrides if path != ["limit"]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # Untimed warm-up: the first fit in a process pays one-time costs (lazy imports, allocator).
        _centre_crop(images[0], Path(tmp) / "warmup.png", CROP)
        warmup = {"task": "image_fractalize", "input": str(Path(tmp) / "warmup.png"), "output": str(Path(tmp) / "w.png")}
        override(warmup, ["encoder", "steps"], 5, registry)
        run_task(validate_data(warmup, registry, "bench image-fit"), registry, str(ctx.device))
        for path in images:
            crop = Path(tmp) / path.name
            _centre_crop(path, crop, CROP)
            data: dict[str, Any] = {"task": "image_fractalize", "input": str(crop), "output": str(Path(tmp) / f"out_{path.name}")}
            for key, value in settings:
                override(data, key, value, registry)
            metrics = run_task(validate_data(data, registry, "bench image-fit"), registry, str(ctx.device))
            rows.append({"image": path.name, **{k: metrics[k] for k in ("psnr_db", "fit_seconds", "code_bytes", "lipschitz_bound")}})
            print(f"{path.name}: {metrics['psnr_db']:.2f} dB in {metrics['fit_seconds']:.1f} s")
    summary = {
        "images": len(rows),
        "crop": f"{CROP}x{CROP} centre",
        "device": str(ctx.device),
        "mean_psnr_db": round(statistics.mean(r["psnr_db"] for r in rows), 3),
        "median_fit_seconds": round(statistics.median(r["fit_seconds"] for r in rows), 2),
        "max_fit_seconds": round(max(r["fit_seconds"] for r in rows), 2),
        "settings": {".".join(map(str, k)): v for k, v in settings} or "image_fractalize defaults",
    }
    lines = [
        "# image-fit: fractalization of Kodak centre crops",
        "",
        f"`collagekit bench image-fit` on {summary['images']} {summary['crop']} crops, device {summary['device']}.",
        "PSNR: the saved .clg decoded at scale 1, 8-bit, whole image (DESIGN section 4). Fit time: one",
        "untimed warm-up fit first; each image's fit (collage warm-up + fixed-point steps) timed once.",
        "",
        "| image | PSNR (dB) | fit (s) | code bytes |",
        "|---|---|---|---|",
        *(f"| {r['image']} | {r['psnr_db']:.2f} | {r['fit_seconds']:.1f} | {r['code_bytes']} |" for r in rows),
        "",
        f"Mean PSNR {summary['mean_psnr_db']:.2f} dB; median fit {summary['median_fit_seconds']:.1f} s, max {summary['max_fit_seconds']:.1f} s.",
        "",
    ]
    write_results(ctx.out, "image_fit", "\n".join(lines), {"summary": summary, "images": rows})
    return summary

