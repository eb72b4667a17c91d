"""What one collage step costs: dense vs sparse mixing, uniform vs adaptive cells, on one image.

Every configuration codes the same 512x512 RGB image, so a step does real work on real codes: dense
codes are fitted for a few collage-loss steps (their weights' values do not change a step's cost),
sparse ones come from the least-squares search. Time: after a warm-up, the configurations' steps run
in turn, ``REPEATS`` rounds, and each one's median is reported (interleaving spreads whatever else the
machine does over all of them alike). Memory: in a fresh process per configuration and scale (a
process that has run other work reuses its freed heap, and a step then shows no growth at all), the
peak resident memory of one step above what was resident before it (Linux: the peak is reset through
/proc/self/clear_refs), so it counts the step's output and temporaries, not the code or the input.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
from pathlib import Path
from typing import Any

import torch

# name -> (collage config, how the code is made); all on 8x8 top cells unless adaptive
FULL = {"name": "tiles2d", "range_size": 8, "domain_size": "full"}
LOCAL = {"name": "tiles2d", "range_size": 8, "domain_size": 32, "domain_stride": 32}
CONFIGS: dict[str, dict[str, Any]] = {
    "dense, uniform 8x8, whole image as domain (S = 8)": {"partitioner": FULL, "mixing": "dense"},
    "sparse, uniform 8x8, whole image as domain (J = 1)": {"partitioner": FULL, "mixing": "sparse"},
    "sparse, adaptive 16..2, whole image as domain (J = 1)": {
        "partitioner": {**FULL, "range_size": 16, "levels": 4}, "mixing": "sparse", "ranges": 4096},
    "dense, uniform 8x8, 32x32 domains (S = 2,048)": {"partitioner": LOCAL, "mixing": "dense"},
    "sparse, uniform 8x8, 32x32 domains (J = 1)": {"partitioner": LOCAL, "mixing": "sparse"},
    "sparse, adaptive 16..2, 64x64 domains (J = 1)": {
        "partitioner": {**LOCAL, "range_size": 16, "levels": 4, "domain_size": 64, "domain_stride": 64},
        "mixing": "sparse", "ranges": 4096},
}  # fmt: skip
SCALES = (1, 4)
REPEATS = 15


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _step_memory_child(name: str, scale: int, crop: str, out: Any) -> None:
    """In a fresh process: make the configuration's code, warm its step up, then one step's peak resident
    memory above what was resident before it (MB), or None where the peak cannot be reset."""
    import ctypes

    from collagekit.registry import get_registry
    from collagekit_image.imageio import load_image

    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: big blocks mapped, unmapped at free
    except (OSError, AttributeError):
        out.put(None)
        return
    torch.set_num_threads(1)
    x = load_image(Path(crop), 1 << 24)
    collage, code = _build(name, x, get_registry(), torch.device("cpu"))
    step = collage.step_fn(code, tuple(x.shape[2:]), scale)
    z = torch.rand(1, 3, *(s * scale for s in x.shape[2:]))
    with torch.no_grad():
        step(z)
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            before = _rss_kib("VmRSS")
            step(z)
            out.put(round((_rss_kib("VmHWM") - before) / 1024, 1))
        except OSError:
            out.put(None)


def peak_step_memory(name: str, scale: int, crop: Path) -> float | None:
    """One step's peak memory (MB), measured in a child process (see the module's docstring)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_step_memory_child, args=(name, scale, str(crop), queue))
    child.start()
    child.join(timeout=600)
    return queue.get() if child.exitcode == 0 and not queue.empty() else None


def held_memory(collage, code, spatial: tuple[int, ...], scale: int) -> float:
    """MB a decode holds for the code at this scale besides the signal: the code's tensors and what the
    map precomputes (dense: the constant part per range cell; sparse: the gather plan, per-sample weights
    and offsets)."""
    from collagekit import sparse

    tensors = list(code)
    if collage.sparse:
        plan = sparse.plan_for(collage, code, spatial, scale)
        weights_and_offset = plan.source.numel() * 4 + plan.leaf.numel() * 4  # float32 per sample and source, one offset
        tensors += [plan.source, plan.leaf, plan.constant, plan.sign]
        extra = weights_and_offset
    else:
        extra = code.bias.numel() * math.prod(collage.partitioner.range_size(scale)) * 4  # the offset cells
    return round((sum(t.numel() * t.element_size() for t in tensors) + extra) / 2**20, 1)


def _build(name: str, x: torch.Tensor, registry, device: torch.device):
    """The configuration's operator and a code of ``x`` for it."""
    from collagekit.config import CollageConfig
    from collagekit.recipe import RecipeModels
    from collagekit.search import search

    config = CONFIGS[name]
    collage = RecipeModels(registry).specialize(CollageConfig).model_validate({
        "partitioner": config["partitioner"], "auxiliary": [{"name": "dihedral"}], "mixing": config["mixing"],
    }).build(registry).to(device)  # fmt: skip
    x = x.to(device)
    if collage.sparse:
        return collage, search(collage, x, ranges=config.get("ranges", math.prod(collage.partitioner.range_grid(tuple(x.shape[2:])))))
    from collagekit.fit import FitSettings, refine
    from collagekit.solver import Anderson

    code, _ = refine(x, collage, Anderson(), collage.init_params(x), FitSettings(steps=0, collage_steps=3, lr=0.05))
    return collage, code


def measure(x: torch.Tensor, crop: Path, registry, device: torch.device) -> list[dict[str, Any]]:
    """x: (1 3 512 512), the image ``crop`` holds -> one row per configuration and scale."""
    import statistics
    import time

    from collagekit.device import synchronize

    spatial = tuple(x.shape[2:])
    built = {name: _build(name, x, registry, device) for name in CONFIGS}
    rows = []
    for scale in SCALES:
        z = torch.rand(1, 3, *(s * scale for s in spatial), device=device)
        steps = {name: collage.step_fn(code, spatial, scale) for name, (collage, code) in built.items()}
        wall: dict[str, list[float]] = {name: [] for name in steps}
        cpu: dict[str, list[float]] = {name: [] for name in steps}
        with torch.no_grad():
            for step in steps.values():
                step(z)  # warm-up: plans, allocator
            for _ in range(REPEATS):
                for name, step in steps.items():
                    w, c = time.perf_counter(), time.process_time()
                    step(z)
                    synchronize(device)
                    wall[name].append(time.perf_counter() - w)
                    cpu[name].append(time.process_time() - c)
        for name, (collage, code) in built.items():
            rows.append({
                "configuration": name, "scale": scale,
                "ranges": code.leaves if collage.sparse else collage.partitioner.num_ranges(spatial) * 3,
                "sources_per_range": collage.sources if collage.sparse else collage.num_sources(spatial)[0],
                "step_ms": round(statistics.median(wall[name]) * 1000, 2), "step_cpu_ms": round(statistics.median(cpu[name]) * 1000, 2),
                "step_memory_mb": peak_step_memory(name, scale, crop) if device.type == "cpu" else _cuda_peak(steps[name], z, device),
                "held_memory_mb": held_memory(collage, code, spatial, scale),
            })  # fmt: skip
            print(f"{name} x{scale}: {rows[-1]['step_ms']} ms, {rows[-1]['step_memory_mb']} MB per step, {rows[-1]['held_memory_mb']} MB held")
        del steps
    return rows


def _cuda_peak(step, z: torch.Tensor, device: torch.device) -> float:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.no_grad():
        step(z)
    torch.cuda.synchronize(device)
    return round((torch.cuda.max_memory_allocated(device) - before) / 2**20, 1)


def markdown(rows: list[dict[str, Any]], image: str, threads: int) -> list[str]:
    lines = [
        "## One collage step: dense vs sparse, uniform vs adaptive",
        "",
        f"`collagekit bench image-fit section=step`: the 512x512 centre crop of {image} (RGB, 3 planes), {threads} torch",
        "thread(s). Time: median of 5 steps after a warm-up (wall; CPU beside it). Memory: peak resident memory during a",
        "step above what was resident before it (its output and temporaries). Held: what a decode keeps for the code at",
        "that scale besides the signal (the code; dense: its constant part per range cell; sparse: the gather plan,",
        "per-sample weights and offsets, built once per code and scale). Dense codes weigh every source of every range",
        "(K x S weights per channel); sparse ones name one.",
        "",
        "| configuration | scale | ranges (all planes) | sources per range | step (ms) | CPU (ms) | step memory (MB) | held (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['configuration']} | {r['scale']} | {r['ranges']:,} | {r['sources_per_range']:,} | {r['step_ms']} | "
                     f"{r['step_cpu_ms']} | {r['step_memory_mb']} | {r['held_memory_mb']} |")  # fmt: skip
    lines.append("")
    return lines

