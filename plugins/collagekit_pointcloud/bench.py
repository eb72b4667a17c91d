"""``collagekit bench ifs``: fit known 3D fractals, time the chaos game, fit real scans as K grows.

Options (``key=value``): ``targets=N`` random IFS besides the Sierpinski tetrahedron and the 3D fern
(default 50, the issue's full run; ``targets=10`` for a quick one), ``points=N`` attractor points to fit from (10000),
``speed_points=N`` chaos-game points per timed run (20 M), ``repeats=N`` (5), ``scans=N`` real clouds
(2; all of them: 7), ``ks=[2,4,8]`` map counts for the scans, ``parts=[known,speed,scans]``,
any FitSettings field (``steps=100``, ``trials=2``, ...), ``pictures=DIR`` for the rendered PNGs (default:
``images/`` beside the results folder; ``none`` to skip).
The fitter is told each target's number of maps K and sees only the target's points: the seeds that made
the random IFS (0, 1, ...) and drew its points (1) are never passed to it (it uses its own seed, 0).
Fit times are wall-clock and CPU (process) seconds: on a shared machine the wall time also counts other
processes' use of the cores, so the load average at the start and the end is recorded too.
Every Chamfer is the symmetric Chamfer-L2 in the target's unit cube (DESIGN section 4).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from collagekit.bench import BenchContext, write_results
from collagekit.errors import CollagekitError

THRESHOLD = 1e-3  # Chamfer-L2 target in the unit cube
TIME_LIMIT = 60.0  # seconds per fit


def _settings(ctx: BenchContext) -> Any:
    """FitSettings with any of its fields given as options (``steps=100 trials=2``)."""
    from collagekit_pointcloud.config import FitSettings

    return FitSettings(**{name: ctx.option(name) for name in FitSettings.model_fields})


def _known_targets(count: int) -> list[tuple[str, Any]]:
    from collagekit_pointcloud.targets import fern_3d, random_ifs, sierpinski_tetrahedron

    return [("sierpinski", sierpinski_tetrahedron()), ("fern", fern_3d())] + [
        (f"random-{seed:02d}", random_ifs(seed)) for seed in range(count)
    ]


def _known(ctx: BenchContext, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from collagekit_pointcloud.chamfer import chamfer
    from collagekit_pointcloud.chaos import chaos_game
    from collagekit_pointcloud.fit import FitSettings, fit_ifs
    from collagekit_pointcloud.targets import unit_cube

    count, points = ctx.option("targets"), ctx.option("points")
    settings = _settings(ctx)
    # Untimed warm-up: one-time costs (lazy imports, allocator, thread pools) stay out of the timings.
    warm = unit_cube(chaos_game(_known_targets(0)[0][1], 2000)[0]).to(ctx.device)
    fit_ifs(warm, 4, FitSettings(steps=5, register_steps=2, trials=1, trial_steps=2, restarts=1), torch.Generator().manual_seed(0))
    for name, target in _known_targets(count):
        cloud = unit_cube(chaos_game(target, points, generator=torch.Generator().manual_seed(1), device=ctx.device)[0].cpu())
        started, cpu = time.perf_counter(), time.process_time()
        result = fit_ifs(cloud.to(ctx.device), target.maps, settings, torch.Generator().manual_seed(0))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        fitted = chaos_game(result.ifs, points, generator=torch.Generator().manual_seed(2), device=ctx.device)[0].cpu()
        again = unit_cube(chaos_game(target, points, generator=torch.Generator().manual_seed(3))[0])
        cd = chamfer(fitted, cloud)
        row = {
            "target": name,
            "maps": target.maps,
            "chamfer": cd,
            "sampling_floor": chamfer(again, cloud),  # two samples of the true attractor: the best possible
            "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu, 1),
            "ok": cd <= THRESHOLD and seconds <= TIME_LIMIT,
        }
        rows.append(row)
        print(f"{name} (K={target.maps}): chamfer {cd:.2e} (floor {row['sampling_floor']:.1e}) in {seconds:.1f} s ({cpu:.1f} s CPU)")
    passed = sum(r["ok"] for r in rows)
    return {
        "within_chamfer": sum(r["chamfer"] <= THRESHOLD for r in rows),
        "targets": len(rows),
        "passed": passed,
        "pass_rate": round(passed / len(rows), 3),
        "median_chamfer": statistics.median(r["chamfer"] for r in rows),
        "median_fit_seconds": statistics.median(r["seconds"] for r in rows),
        "max_fit_seconds": max(r["seconds"] for r in rows),
        "median_fit_cpu_seconds": statistics.median(r["cpu_seconds"] for r in rows),
        "max_fit_cpu_seconds": max(r["cpu_seconds"] for r in rows),
    }


def _speed(ctx: BenchContext) -> dict[str, Any]:
    from collagekit_pointcloud.chaos import chaos_game
    from collagekit_pointcloud.targets import random_ifs, sierpinski_tetrahedron

    n, repeats = ctx.option("speed_points"), ctx.option("repeats")
    result = {}
    for name, ifs in (("sierpinski (K=4)", sierpinski_tetrahedron()), ("random (K=7)", random_ifs(0, maps=7))):
        chaos_game(ifs, n, device=ctx.device)  # warm-up, excluded
        times = []
        for r in range(repeats):
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            chaos_game(ifs, n, generator=torch.Generator().manual_seed(r), device=ctx.device)
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        rate = n / statistics.median(times) / 1e6
        result[name] = round(rate, 1)
        print(f"chaos game {name}: {rate:.1f} M points/s (median of {repeats}, {n:,} points)")
    return result


def _scans(ctx: BenchContext, rows: list[dict[str, Any]]) -> list[Path]:
    """Fit every scan at every K; return the pictures drawn (scan and attractor, side by side)."""
    from collagekit_pointcloud.chamfer import chamfer
    from collagekit_pointcloud.cloudio import Normalisation, load_cloud
    from collagekit_pointcloud.fit import fit_ifs
    from collagekit_pointcloud.ifscodec import render
    from collagekit_pointcloud.png import render_panels

    files = sorted(ctx.data.glob("*.ply"))[: ctx.option("scans")]
    if not files:
        raise CollagekitError(f"no .ply clouds in {ctx.data}")
    ks = ctx.option("ks")
    pictures = ctx.option("pictures") or str(ctx.out.parent / "images")
    drawn: list[Path] = []
    for path in files:
        xyz = load_cloud(path, 1 << 26)[0, :3].T.contiguous()
        norm = Normalisation.of(xyz)
        unit = norm.forward(xyz)
        reference = unit[torch.randperm(len(unit), generator=torch.Generator().manual_seed(0))[:20_000]]
        for k in ks:
            started, cpu = time.perf_counter(), time.process_time()
            result = fit_ifs(unit.to(ctx.device), k, _settings(ctx), torch.Generator().manual_seed(0))
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            cloud = render(result.ifs, norm, len(reference), 1, ctx.device)
            cd = chamfer(norm.forward(cloud[0, :3].T), reference)
            rows.append({"cloud": path.stem, "points": len(unit), "maps": k, "chamfer": cd, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1)})
            print(f"{path.stem} K={k}: chamfer {cd:.2e} in {seconds:.1f} s ({cpu:.1f} s CPU)")
            if pictures != "none" and k == max(ks):
                # The scan (grey) beside its attractor (coloured by map), the same number of points each.
                count = min(len(xyz), 60_000)
                scan = xyz[torch.randperm(len(xyz), generator=torch.Generator().manual_seed(0))[:count]].T[None]
                picture = Path(pictures) / f"ifs_{path.stem}_k{k}.png"
                render_panels([scan, render(result.ifs, norm, count, 1, torch.device("cpu"))], picture, size=320, up="y")
                drawn.append(picture)
    return drawn


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def run(ctx: BenchContext) -> dict[str, Any]:
    parts = ctx.option("parts")
    parts = [parts] if isinstance(parts, str) else list(parts)
    known_rows: list[dict[str, Any]] = []
    scan_rows: list[dict[str, Any]] = []
    pictures: list[Path] = []
    summary: dict[str, Any] = {"device": str(ctx.device), "threads": torch.get_num_threads(), "load_average_start": _load()}
    summary["fit_settings"] = _settings(ctx).model_dump()
    if "known" in parts:
        summary["known"] = _known(ctx, known_rows)
    if "speed" in parts:
        summary["chaos_game_mpoints_per_s"] = _speed(ctx)
    if "scans" in parts:
        pictures = _scans(ctx, scan_rows)
    summary["load_average_end"] = _load()
    lines = [
        "# ifs: 3D IFS fitting and rendering",
        "",
        f"`collagekit bench ifs` on device {summary['device']}. Chamfer: symmetric Chamfer-L2 (mean squared",
        "nearest-neighbour distance both ways, summed) in the target's unit cube. Fit times exclude an",
        "untimed warm-up fit; chaos-game rates are the median of several timed runs after a warm-up run.",
        "Fit times are wall-clock and, in brackets, CPU seconds of this process; 1-minute load average",
        f"{summary['load_average_start']} at the start and {summary['load_average_end']} at the end on {os.cpu_count()} cores.",
        "",
    ]
    if known_rows:
        k = summary["known"]
        lines += [
            f"## Known fractals: {k['passed']} / {k['targets']} within Chamfer ≤ {THRESHOLD:g} and ≤ {TIME_LIMIT:g} s",
            "",
            f"Fitted from {ctx.option('points'):,} attractor points; the fitter is told the number of maps K",
            "and sees only the points (never the seeds that made the random IFS). *floor*: the Chamfer between two",
            "independent samples of the true attractor, the best a perfect fit can score.",
            f"{k['within_chamfer']} / {k['targets']} are within the Chamfer target whatever the time.",
            "",
            "| target | K | Chamfer | floor | fit (s) | ok |",
            "|---|---|---|---|---|---|",
            *(
                f"| {r['target']} | {r['maps']} | {r['chamfer']:.2e} | {r['sampling_floor']:.1e} | {r['seconds']:.1f} ({r['cpu_seconds']:.1f}) | {'yes' if r['ok'] else 'no'} |"
                for r in known_rows
            ),
            "",
            f"Median Chamfer {k['median_chamfer']:.2e}; median fit {k['median_fit_seconds']:.1f} s ({k['median_fit_cpu_seconds']:.1f} s CPU),",
            f"max {k['max_fit_seconds']:.1f} s ({k['max_fit_cpu_seconds']:.1f} s CPU).",
            "",
        ]
    if "chaos_game_mpoints_per_s" in summary:
        lines += ["## Chaos game", "", "| IFS | M points/s |", "|---|---|"]
        lines += [f"| {name} | {rate} |" for name, rate in summary["chaos_game_mpoints_per_s"].items()]
        lines.append("")
    if scan_rows:
        lines += [
            "## Real scans: Chamfer of the attractor to the cloud as K grows",
            "",
            "| cloud | points | K | Chamfer | fit (s) |",
            "|---|---|---|---|---|",
            *(f"| {r['cloud']} | {r['points']} | {r['maps']} | {r['chamfer']:.2e} | {r['seconds']:.1f} ({r['cpu_seconds']:.1f}) |" for r in scan_rows),
            "",
        ]
        lines += [
            f"![{p.stem}]({Path(os.path.relpath(p, ctx.out)).as_posix()})\n\n*{p.stem.removeprefix('ifs_')}: the scan (left) and its"
            " attractor (right, coloured by map), the same number of points each.*\n"
            for p in pictures
        ]
    write_results(ctx, "ifs", "\n".join(lines), {"summary": summary, "known": known_rows, "scans": scan_rows})
    flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    for key in ("known", "chaos_game_mpoints_per_s"):
        for sub, value in (summary.get(key) or {}).items():
            flat[f"{key}.{sub}"] = value
    return flat

