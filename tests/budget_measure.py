"""Compare collagekit's memory budget estimates with the peak memory each operation really takes.

    python tests/budget_measure.py [--out docs/results] [--quick] [--only TEXT]

Every case runs in a fresh child process: the child warms up with a small run of the same command,
resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), runs the measured command through the
CLI's ``main`` and reports the peak RSS above its resident size just before (``VmHWM - VmRSS``) and
the largest estimate any :func:`collagekit.budget.check` call made during the run (the limit is
lifted, so nothing is refused). Writes ``budget.md`` and ``budget.json`` under ``--out``.
Linux only (``/proc``). Not a test: it takes a few minutes and several GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
FAST_FIT = ["encoder.collage_steps=2", "encoder.steps=2"]


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _record_estimates() -> list[int]:
    """Lift the limit and make every budget check append its estimate to the returned list."""
    os.environ["COLLAGEKIT_MAX_MEMORY"] = "1T"
    from collagekit import budget

    asked: list[int] = []
    original = budget.check

    def recording(need: int, what: str, remedy: str) -> None:
        asked.append(need)
        original(need, what, remedy)

    budget.check = recording
    return asked


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one case in this (fresh) process and measure it."""
    asked = _record_estimates()
    from collagekit.cli import main

    def run(args: list[str]) -> None:
        try:
            main([*args, "--force"])  # the warm-up (and earlier cases) wrote the same outputs
        except SystemExit as exc:
            if exc.code:
                raise RuntimeError(f"collagekit {' '.join(args)} failed with status {exc.code}") from None

    if spec.get("warm"):
        run(spec["warm"])
    asked.clear()
    before = _kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    started = time.perf_counter()
    run(spec["args"])
    seconds = time.perf_counter() - started
    peak = _kib("VmHWM")
    return {"estimate_mib": round(max(asked) / 2**20, 1) if asked else None, "measured_mib": round((peak - before) / 1024, 1),
            "baseline_mib": round(before / 1024, 1), "seconds": round(seconds, 2)}


def _collagekit(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "collagekit", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"collagekit {' '.join(args)}: {done.stderr.strip()}")


def prepare(tmp: Path) -> None:
    """The codes the cases decode, made with the CLI."""
    from PIL import Image

    image = REPO / "plugins" / "collagekit_image" / "samples" / "kodim23_256.png"
    Image.open(image).resize((128, 128)).save(tmp / "rgb128.png")
    Image.open(image).resize((512, 512)).save(tmp / "rgb512.png")
    Image.open(image).convert("L").save(tmp / "grey256.png")
    _collagekit("fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp / "frac.png"), *FAST_FIT)
    sliding = ["collage.partitioner.domain_size=16", "collage.partitioner.domain_stride=8", "collage.auxiliary=[{name: learned, count: 8}]"]
    _collagekit("fractalize", str(DATA / "kodim05_64.png"), "-o", str(tmp / "slide.png"), *sliding, *FAST_FIT)
    _collagekit("compress", str(image), "-o", str(tmp / "nc.clg"))
    _collagekit("compress", str(image), "-o", str(tmp / "nc_plain.clg"), "-O", "rdo=false")  # keeps the domain weights: longer solves
    _collagekit("compress", str(image), "-o", str(tmp / "pifs.clg"), "--method", "pifs")
    _collagekit("compress", str(image), "-o", str(tmp / "sparse.clg"), "--method", "sparse-collage")
    _collagekit("compress", str(DATA / "trumpet_stereo_100ms.flac"), "-o", str(tmp / "audio.clg"))


def cases(tmp: Path, quick: bool) -> list[dict[str, Any]]:
    def decode(name: str, code: str, suffix: str, scale: int, *extra: str) -> dict[str, Any]:
        out = str(tmp / f"{name}{suffix}")
        args = ["decompress", str(tmp / code), "-o", out, "--scale", str(scale), *extra]
        return {"name": name, "args": args, "warm": ["decompress", str(tmp / code), "-o", out, *extra]}

    out: list[dict[str, Any]] = []
    for scale in (1, 8) if quick else (1, 8, 16, 32):
        out.append(decode(f"grid-collage 64x64 RGB, full domain + dihedral, scale {scale}", "frac.clg", ".png", scale))
    for scale in (1, 8) if quick else (1, 8, 16):
        out.append(decode(f"grid-collage 64x64 RGB, 16-px domains every 8 + 8 learned patches, scale {scale}", "slide.clg", ".png", scale))
    for image in (("rgb128.png",) if quick else ("rgb128.png", "grey256.png", "kodim23_256.png", "rgb512.png")):
        source = tmp / image if image != "kodim23_256.png" else REPO / "plugins" / "collagekit_image" / "samples" / image
        args = ["fractalize", str(source), "-o", str(tmp / f"fit_{image}"), *FAST_FIT]
        warm = ["fractalize", str(DATA / "kodim15_grey_48x40.png"), "-o", str(tmp / "warm.png"), *FAST_FIT]
        out.append({"name": f"fractalize fit + decode, {image}", "args": args, "warm": warm})
    for scale in (1, 4) if quick else (1, 2, 4):
        out.append(decode(f"neural-collage 256x256 RGB, scale {scale}", "nc.clg", ".png", scale))
    for scale in () if quick else (1, 4):
        out.append(decode(f"neural-collage 256x256 RGB without rate-distortion choice (rdo=false), scale {scale}", "nc_plain.clg", ".png", scale))
    for scale in (1, 4) if quick else (1, 4, 8):
        out.append(decode(f"pifs 256x256 RGB, scale {scale}", "pifs.clg", ".png", scale))
    for scale in (1, 4) if quick else (1, 4, 8):
        out.append(decode(f"sparse-collage 256x256 RGB, scale {scale}", "sparse.clg", ".png", scale))
    for extra in [()] if quick else [(), ("-O", "search=exhaustive"), ("-O", "refine_steps=3")]:
        how = {(): "shortlist search", ("-O", "search=exhaustive"): "exhaustive search", ("-O", "refine_steps=3"): "shortlist search + 3 refinement steps"}[extra]
        args = ["compress", str(tmp / "rgb512.png"), "-o", str(tmp / "enc.clg"), "--method", "sparse-collage", *extra]
        warm = ["compress", str(tmp / "rgb128.png"), "-o", str(tmp / "warm.clg"), "--method", "sparse-collage", *extra]
        out.append({"name": f"sparse-collage encode 512x512 RGB, {how}", "args": args, "warm": warm})
    for scale in (1, 16) if quick else (1, 16, 64):
        out.append(decode(f"audio-collage 0.1 s stereo 44.1 kHz, scale {scale}", "audio.clg", ".wav", scale))
    out.extend(audio_fit_cases(tmp, quick))
    for n, scale in ((16, 8),) if quick else ((16, 8), (64, 16)):
        args = ["sample", "mnist", "--n", str(n), "--scale", str(scale), "-o", str(tmp / "samples.png")]
        out.append({"name": f"Collage VAE, {n} samples at scale {scale}", "args": args, "warm": ["sample", "mnist", "--n", "4", "-o", str(tmp / "warm.png")]})
    return out


def audio_fit_cases(tmp: Path, quick: bool) -> list[dict[str, Any]]:
    """Audio fractalize with its default recipe (the collage search): the repository's 0.1 s stereo clip, and
    the whole 5.7 s stereo 44.1 kHz percussion clip of the shared data (where ``COLLAGEKIT_DATA`` has it), the
    longest signal a default fit is run on; its search once grew to 24 GB (heap fragmentation)."""
    warm = ["fractalize", str(DATA / "trumpet_stereo_100ms.flac"), "-o", str(tmp / "warm.wav")]
    out = [{"name": "audio fractalize fit + decode, 0.1 s stereo 44.1 kHz", "args": [*warm[:-1], str(tmp / "fit_short.wav")], "warm": warm}]
    clip = Path(os.environ.get("COLLAGEKIT_DATA", REPO.parent / "shared" / "data")) / "audio" / "music_brid_M4-01-SA_percussion.flac"
    if not quick and clip.is_file():
        args = ["fractalize", str(clip), "-o", str(tmp / "fit_long.wav")]
        out.append({"name": "audio fractalize fit + decode, 5.7 s stereo 44.1 kHz (whole percussion clip)", "args": args, "warm": warm})
    return out


def ifs_cases(tmp: Path, quick: bool) -> list[dict[str, Any]]:
    """IFS renders through the codec (writing PLY needs open3d; where it is missing only the render is measured)."""
    from collagekit.container import write_container
    from collagekit_pointcloud.cloudio import Normalisation
    from collagekit_pointcloud.ifscodec import pack
    from collagekit_pointcloud.targets import random_ifs

    write_container(tmp / "ifs.clg", pack(random_ifs(0, 4), Normalisation((0.0, 0.0, 0.0), 1.0), 1000, 0, {}))
    try:
        import open3d  # noqa: F401

        suffix, what = ".ply", "render + write PLY"
    except ImportError:
        suffix, what = None, "render only (open3d missing)"
    out = []
    for points in (1_000_000,) if quick else (1_000_000, 4_000_000, 10_000_000):
        name = f"ifs {points:,} points, {what}"
        if suffix:
            args = ["decompress", str(tmp / "ifs.clg"), "-o", str(tmp / f"ifs{suffix}"), f"points={points}"]
            out.append({"name": name, "args": args, "warm": [*args[:-1], "points=1000"]})
        else:
            out.append({"name": name, "ifs": str(tmp / "ifs.clg"), "points": points})
    return out


def child_ifs(spec: dict[str, Any]) -> dict[str, Any]:
    """An IFS render without a writer: the codec's decode, measured like :func:`child`."""
    asked = _record_estimates()
    import torch

    from collagekit.container import read_container
    from collagekit.registry import get_registry

    codec = get_registry().get("codec", "ifs")
    container = read_container(spec["ifs"])
    codec.decode(container, None, scale=1, device=torch.device("cpu"), options={"points": 1000})
    asked.clear()
    before = _kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    cloud = codec.decode(container, None, scale=1, device=torch.device("cpu"), options={"points": spec["points"]})
    seconds = time.perf_counter() - started
    peak = _kib("VmHWM")
    del cloud
    return {"estimate_mib": round(max(asked) / 2**20, 1), "measured_mib": round((peak - before) / 1024, 1),
            "baseline_mib": round(before / 1024, 1), "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller cases")
    parser.add_argument("--only", help="only the cases whose name holds this text")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child_ifs(spec) if "ifs" in spec else child(spec)))
        return
    import torch

    from collagekit.bench import conditions, save_results

    measured_under = conditions(torch.device("cpu"))  # before the work: the load at the start
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        prepare(tmp)
        for spec in cases(tmp, args.quick) + ifs_cases(tmp, args.quick):
            if args.only and args.only not in spec["name"]:
                continue
            # Buffers of 64 KiB and more are mapped and returned to the system when freed (glibc), so
            # the warm-up's freed memory does not hide the measured run's allocations.
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
            done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, env=env)
            if done.returncode:
                raise SystemExit(f"{spec['name']}: {done.stderr.strip()[-2000:]}")
            row = {"case": spec["name"], **json.loads(done.stdout.strip().splitlines()[-1])}
            row["ratio"] = round(row["estimate_mib"] / max(row["measured_mib"], 1.0), 2)
            rows.append(row)
            print(f"{row['case']}: estimate {row['estimate_mib']} MiB, measured {row['measured_mib']} MiB (x{row['ratio']})", flush=True)
    measured_under |= {"omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"), "load_average_end": round(os.getloadavg()[0], 2)}
    lines = [
        "# Memory budget: estimates against measured peak memory",
        "",
        "Each case runs in a fresh process (glibc told to map every buffer of 64 KiB or more, so freed memory",
        "goes back to the system) after an untimed warm-up of the same command at a small size.",
        "*measured*: peak resident memory during the command above the resident memory just before it",
        "(Linux `VmHWM` after resetting it through `/proc/self/clear_refs`, minus `VmRSS`); *estimate*: the",
        "largest figure the command's `collagekit.budget.check` calls computed before allocating. The budget",
        "refuses an operation when its estimate exceeds `COLLAGEKIT_MAX_MEMORY` (default 4 GiB), so an estimate",
        "must not fall below what is measured (ratio >= 1); small cases are dominated by fixed costs.",
        "",
        "| case | estimate MiB | measured MiB | estimate / measured | seconds |",
        "|---|---|---|---|---|",
        *(f"| {r['case']} | {r['estimate_mib']} | {r['measured_mib']} | {r['ratio']} | {r['seconds']} |" for r in rows),
        "",
    ]
    save_results(args.out, "budget", "\n".join(lines), {"cases": rows}, measured_under)
    print(f"wrote {args.out / 'budget.md'}")


if __name__ == "__main__":
    main()
