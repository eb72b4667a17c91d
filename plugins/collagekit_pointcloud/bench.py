"""``collagekit bench ifs``: fit known 3D fractals, time the chaos game, fit real scans as K grows.

Options (``key=value``): ``split=test`` (the benchmark: the Sierpinski tetrahedron, the 3D fern and random
IFS from seeds 0, 1, ...) or ``split=validation`` (random IFS from seeds 1000, 1001, ... only, the set the
fitter's settings are judged on; its results go to ``ifs_validation.md``), ``targets=N`` random IFS (default
50 for test, 20 for validation; ``targets=10`` for a quick run), ``points=N`` attractor points to fit from (10000),
``speed_points=N`` chaos-game points per timed run (20 M), ``repeats=N`` (5), ``scans=N`` real clouds
(2; all of them: 7), ``ks=[2,4,8]`` map counts for the scans, ``parts=[known,speed,scans]`` (validation:
``known`` only, as the speed and the scans choose nothing),
any FitSettings field (``steps=100``, ``trials=2``, ...), ``pictures=DIR`` for the rendered PNGs (default:
``images/`` beside the results folder; ``none`` to skip).
The fitter is told each target's number of maps K and sees only the target's points: the seeds that made
the random IFS and drew its points (1) are never passed to it (it uses its own seed, 0).
Fit times are wall-clock and CPU (process) seconds: on a shared machine the wall time also counts other
processes' use of the cores, so the load average at the end is recorded beside the conditions' (at the start).
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


def split_seeds(split: str, count: int | None) -> range:
    """The seeds of ``split``'s random targets: the first ``count`` (default: the split's size) of its range."""
    from collagekit_pointcloud.config import SPLIT_SEEDS, SPLIT_TARGETS

    seeds = SPLIT_SEEDS[split]
    return seeds[: SPLIT_TARGETS[split] if count is None else count]


def known_targets(split: str, count: int | None) -> list[tuple[str, Any]]:
    """(name, IFS) for every target of ``split``: the named fractals belong to the test split only."""
    from collagekit_pointcloud.targets import fern_3d, random_ifs, sierpinski_tetrahedron

    named = [("sierpinski", sierpinski_tetrahedron()), ("fern", fern_3d())] if split == "test" else []
    return named + [(f"random-{seed:02d}", random_ifs(seed)) for seed in split_seeds(split, count)]


def _known(ctx: BenchContext, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from collagekit_pointcloud.chamfer import chamfer
    from collagekit_pointcloud.chaos import chaos_game
    from collagekit_pointcloud.fit import FitSettings, fit_ifs
    from collagekit_pointcloud.targets import unit_cube

    points = ctx.option("points")
    settings = _settings(ctx)
    # Untimed warm-up: one-time costs (lazy imports, allocator, thread pools) stay out of the timings.
    warm = unit_cube(chaos_game(known_targets("test", 0)[0][1], 2000)[0]).to(ctx.device)
    fit_ifs(warm, 4, FitSettings(steps=5, register_steps=2, trials=1, trial_steps=2, restarts=1), torch.Generator().manual_seed(0))
    for name, target in known_targets(ctx.option("split"), ctx.option("targets")):
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
        # On a shared machine the wall time counts other processes' turns on the cores; the CPU time does not.
        "within_time_cpu": sum(r["cpu_seconds"] <= TIME_LIMIT for r in rows),
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


def _search() -> str:
    """How nearest neighbours are found on the CPU: fit times are several times longer without open3d."""
    from collagekit_pointcloud import o3d

    why = o3d.problem()
    return "open3d KD-tree" if why is None else f"chunked brute force (open3d not usable: {why})"


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _parts(ctx: BenchContext) -> list[str]:
    parts = ctx.option("parts")
    split = ctx.option("split")
    if parts is None:
        return ["known", "speed", "scans"] if split == "test" else ["known"]
    parts = [parts] if isinstance(parts, str) else list(parts)
    if split == "validation" and parts != ["known"]:
        raise CollagekitError("bench 'ifs': split=validation has only the known targets (parts=known); the speed and the scans are measured on the test split")
    return parts


def run(ctx: BenchContext) -> dict[str, Any]:
    parts, split = _parts(ctx), ctx.option("split")
    known_rows: list[dict[str, Any]] = []
    scan_rows: list[dict[str, Any]] = []
    pictures: list[Path] = []
    seeds = split_seeds(split, ctx.option("targets"))
    summary: dict[str, Any] = {"split": split, "seeds": [seeds.start, seeds.stop - 1] if seeds else [], "nearest_neighbours": _search()}
    summary["fit_settings"] = _settings(ctx).model_dump()
    if "known" in parts:
        summary["known"] = _known(ctx, known_rows)
    if "speed" in parts:
        summary["chaos_game_mpoints_per_s"] = _speed(ctx)
    if "scans" in parts:
        pictures = _scans(ctx, scan_rows)
    summary["load_average_end"] = _load()
    named = "the Sierpinski tetrahedron, the 3D fern and " if split == "test" else ""
    which = f"random IFS from seeds {seeds.start}-{seeds.stop - 1}" if seeds else "no random IFS"
    lines = [
        f"# ifs{'' if split == 'test' else '_validation'}: 3D IFS fitting and rendering, {split} split",
        "",
        f"`collagekit bench ifs split={split}`: {named}{which}"
        + (" (the benchmark; the fitter's settings are chosen on the validation split, seeds 1000 on)." if split == "test" else " (the set the fitter's settings are judged on; the benchmark reports on the test split, seeds 0 on)."),
        "Chamfer: symmetric Chamfer-L2 (mean squared nearest-neighbour distance both ways, summed) in the",
        "target's unit cube. Fit times exclude an",
        "untimed warm-up fit; chaos-game rates are the median of several timed runs after a warm-up run.",
        "Fit times are wall-clock and, in brackets, CPU seconds of this process; 1-minute load average",
        f"{summary['load_average_end']} at the end on {os.cpu_count()} cores (at the start: see the conditions).",
        f"Nearest neighbours on the CPU: {summary['nearest_neighbours']}.",
        "",
    ]
    if known_rows:
        k = summary["known"]
        lines += [
            f"## Known fractals ({split} split): {k['passed']} / {k['targets']} within Chamfer ≤ {THRESHOLD:g} and ≤ {TIME_LIMIT:g} s",
            "",
            f"Fitted from {ctx.option('points'):,} attractor points; the fitter is told the number of maps K",
            "and sees only the points (never the seeds that made the random IFS). *floor*: the Chamfer between two",
            "independent samples of the true attractor, the best a perfect fit can score.",
            f"{k['within_chamfer']} / {k['targets']} are within the Chamfer target whatever the time; {k['within_time_cpu']} / {k['targets']} fits",
            f"took ≤ {TIME_LIMIT:g} s of CPU time (the *ok* column counts wall time).",
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
    write_results(ctx, "ifs" if split == "test" else "ifs_validation", "\n".join(lines), {"summary": summary, "known": known_rows, "scans": scan_rows})
    flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    for key in ("known", "chaos_game_mpoints_per_s"):
        for sub, value in (summary.get(key) or {}).items():
            flat[f"{key}.{sub}"] = value
    return flat

