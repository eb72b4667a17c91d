"""``collagekit bench image-fit``: fractalization of 256x256 centre crops of the Kodak images with the
uniform recipe and, at the same code size, the adaptive one (section ``fit``), and what one collage step
costs, dense vs sparse and uniform vs adaptive (section ``step``).

Options (:class:`collagekit_image.config.ImageFitOptions`): ``section=fit|step|all``, ``limit=N`` images,
``step_image=NAME``; any other ``key=value`` overrides the uniform recipe's task (e.g. ``encoder.steps=50``).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from collagekit.bench import BenchContext, write_results
from collagekit.errors import CollagekitError

CROP = 256
STEP_CROP = 512
OPTIONS = ("section", "limit", "step_image")  # declared in collagekit_image.config.ImageFitOptions


def _centre_crop(path: Path, out: Path, size: int) -> None:
    from PIL import Image

    with Image.open(path) as image:
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image.convert("RGB").crop((left, top, left + size, top + size)).save(out)


BYTES_PER_RANGE = 9  # over three planes, a little above the cost (the budget search shrinks from there)


def _fit(data: dict[str, Any], registry) -> dict[str, Any]:
    from collagekit.recipe import validate_data
    from collagekit.tasks import run_task

    # Its outputs are temporary files the benchmark itself rewrites (the budget search): force.
    return run_task(validate_data(data, registry, "bench image-fit"), registry, data.get("device"), force=True)


def _adaptive_at(crop: Path, out: Path, size_limit: int, registry, device: str) -> dict[str, Any]:
    """The adaptive recipe on ``crop`` with the largest leaf budget whose file fits ``size_limit`` bytes
    (a range costs about 3.2 bytes per plane: its source index, weight and offset range-coded; start at 9
    bytes over three planes, a little above what fits, and shrink until it fits)."""
    from collagekit.recipe import override, read_recipe
    from collagekit.recipes import find

    base, _ = read_recipe(find("image_fractalize_adaptive"))
    base.update(input=str(crop), output=str(out), code=None, metrics=None, scale=1, device=device)
    budget = size_limit // BYTES_PER_RANGE
    while True:
        data = {**base, "encoder": {**base["encoder"]}}
        override(data, ["encoder", "ranges"], budget, registry)
        metrics = _fit(data, registry)
        if metrics["code_bytes"] <= size_limit or budget <= 16:
            return {**metrics, "ranges": budget}
        budget -= max(1, (metrics["code_bytes"] - size_limit) // BYTES_PER_RANGE + 1)


def fit_section(ctx: BenchContext, registry, images: list[Path]) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    from collagekit.recipe import override

    settings = [(path, value) for path, value in ctx.overrides if not (len(path) == 1 and path[0] in OPTIONS)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # Untimed warm-up: the first fit in a process pays one-time costs (lazy imports, allocator).
        _centre_crop(images[0], Path(tmp) / "warmup.png", CROP)
        warmup = {"task": "image_fractalize", "input": str(Path(tmp) / "warmup.png"), "output": str(Path(tmp) / "w.png"), "device": str(ctx.device)}
        override(warmup, ["encoder", "steps"], 5, registry)
        _fit(warmup, registry)
        _adaptive_at(Path(tmp) / "warmup.png", Path(tmp) / "wa.png", 100_000, registry, str(ctx.device))
        for path in images:
            crop = Path(tmp) / path.name
            _centre_crop(path, crop, CROP)
            data: dict[str, Any] = {"task": "image_fractalize", "input": str(crop), "output": str(Path(tmp) / f"u_{path.name}"), "device": str(ctx.device)}
            for key, value in settings:
                override(data, key, value, registry)
            uniform = _fit(data, registry)
            adaptive = _adaptive_at(crop, Path(tmp) / f"a_{path.name}", uniform["code_bytes"], registry, str(ctx.device))
            rows.append({
                "image": path.name,
                **{f"uniform_{k}": uniform[k] for k in ("psnr_db", "fit_seconds", "code_bytes", "lipschitz_bound")},
                **{f"adaptive_{k}": adaptive[k] for k in ("psnr_db", "fit_seconds", "code_bytes", "lipschitz_bound", "ranges")},
            })  # fmt: skip
            print(f"{path.name}: uniform {uniform['psnr_db']:.2f} dB in {uniform['fit_seconds']:.1f} s; "
                  f"adaptive {adaptive['psnr_db']:.2f} dB in {adaptive['fit_seconds']:.2f} s ({adaptive['code_bytes']} B)")  # fmt: skip

    def stat(key: str, fn=statistics.mean, digits: int = 3) -> float:
        return round(fn(r[key] for r in rows), digits)

    summary = {
        "images": len(rows),
        "crop": f"{CROP}x{CROP} centre",
        "uniform_mean_psnr_db": stat("uniform_psnr_db"),
        "adaptive_mean_psnr_db": stat("adaptive_psnr_db"),
        "uniform_mean_code_bytes": stat("uniform_code_bytes", digits=0),
        "adaptive_mean_code_bytes": stat("adaptive_code_bytes", digits=0),
        "uniform_median_fit_seconds": stat("uniform_fit_seconds", statistics.median, 2),
        "uniform_max_fit_seconds": stat("uniform_fit_seconds", max, 2),
        "adaptive_median_fit_seconds": stat("adaptive_fit_seconds", statistics.median, 2),
        "adaptive_max_fit_seconds": stat("adaptive_fit_seconds", max, 2),
        "settings": {".".join(map(str, k)): v for k, v in settings} or "image_fractalize defaults",
    }
    lines = [
        "## Fractalization: the uniform grid and, at the same code size, the adaptive collage",
        "",
        f"`collagekit bench image-fit section=fit` on {summary['images']} {summary['crop']} Kodak crops. Uniform:",
        "`image_fractalize` defaults (8x8 ranges, each weighing the whole image and its 7 rotations/flips; fitted by",
        "gradient descent). Adaptive: the shipped recipe `image_fractalize_adaptive` (a 16..2 quadtree, one source per",
        "range, the least-squares search) with the largest budget of ranges whose file is no larger than the uniform",
        "one's. PSNR: the saved .clg decoded at scale 1, 8-bit, whole image (DESIGN section 4). Fit time: one untimed",
        "warm-up fit of each kind first; each image's fit timed once.",
        "",
        "| image | uniform PSNR (dB) | fit (s) | bytes | adaptive PSNR (dB) | fit (s) | bytes | ranges per channel |",
        "|---|---|---|---|---|---|---|---|",
        *(f"| {r['image']} | {r['uniform_psnr_db']:.2f} | {r['uniform_fit_seconds']:.1f} | {r['uniform_code_bytes']} | "
          f"{r['adaptive_psnr_db']:.2f} | {r['adaptive_fit_seconds']:.2f} | {r['adaptive_code_bytes']} | {r['adaptive_ranges']} |"
          for r in rows),
        "",
        f"Mean PSNR: uniform {summary['uniform_mean_psnr_db']:.2f} dB ({summary['uniform_mean_code_bytes']:.0f} bytes), adaptive "
        f"{summary['adaptive_mean_psnr_db']:.2f} dB ({summary['adaptive_mean_code_bytes']:.0f} bytes). Fit time, median / max: uniform "
        f"{summary['uniform_median_fit_seconds']:.1f} / {summary['uniform_max_fit_seconds']:.1f} s, adaptive "
        f"{summary['adaptive_median_fit_seconds']:.2f} / {summary['adaptive_max_fit_seconds']:.2f} s.",
        "",
    ]  # fmt: skip
    return summary, lines, rows


def step_section(ctx: BenchContext, registry, images: list[Path]) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    from collagekit_image.imageio import load_image
    from collagekit_image.step_cost import measure, markdown

    name = ctx.option("step_image")
    path = next((p for p in images if p.name == name), None)
    if path is None:
        raise CollagekitError(f"step_image {name!r} is not in {ctx.data}")
    with tempfile.TemporaryDirectory() as tmp:
        crop = Path(tmp) / name
        _centre_crop(path, crop, STEP_CROP)
        rows = measure(load_image(crop, 1 << 24), crop, registry, ctx.device)
    summary = {"image": name, "crop": f"{STEP_CROP}x{STEP_CROP} centre", "threads": torch.get_num_threads()}
    return summary, markdown(rows, name, summary["threads"]), rows


def run(ctx: BenchContext) -> dict[str, Any]:
    from collagekit.registry import get_registry

    registry = get_registry()
    section = ctx.option("section")
    images = sorted(ctx.data.glob("kodim*.png"))
    if not images:
        raise CollagekitError(f"no kodim*.png images in {ctx.data}")
    lines = ["# image-fit: fractalization of Kodak crops, and the cost of one collage step", "", f"Device {ctx.device}.", ""]
    data: dict[str, Any] = {"device": str(ctx.device)}
    summary: dict[str, Any] = {}
    if section in ("fit", "all"):
        fit_summary, fit_lines, fit_rows = fit_section(ctx, registry, images[: ctx.option("limit")])
        lines += fit_lines
        data.update(fit=fit_summary, images=fit_rows)
        summary.update(fit_summary)
    if section in ("step", "all"):
        step_summary, step_lines, step_rows = step_section(ctx, registry, images)
        lines += step_lines
        data.update(step=step_summary, steps=step_rows)
        summary["step_configurations"] = len(step_rows)
    write_results(ctx, "image_fit", "\n".join(lines), data)
    return summary

