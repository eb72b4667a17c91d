"""What one collage step costs: dense vs sparse mixing, uniform vs adaptive cells, on one image.

Every configuration codes the same 512x512 RGB image, so a step does real work on real codes: dense
codes are fitted for a few collage-loss steps (their weights' values do not change a step's cost),
sparse ones come from the least-squares search. A step is timed as the median of several calls after
a warm-up, at scale 1 and 4; its memory is the peak resident memory during those calls above the
resident memory before them (Linux: the peak is reset through /proc/self/clear_refs), so it counts
the step's temporaries, not the code or the input.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path
from typing import Any

import torch

from collagekit.timing import median_time

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
REPEATS = 5


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _mmap_large_blocks() -> None:
    """Make glibc give every block above 128 KiB its own mapping, returned at free: resident memory then
    follows the live tensors (by default freed blocks stay in the heap for reuse, and a step that reuses
    a warm-up's blocks shows no growth at all)."""
    import ctypes

    ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD; fixing it also stops its self-tuning


def peak_step_memory(step, z: torch.Tensor) -> float | None:
    """Peak resident memory (MB) of one call of ``step(z)`` above what was resident before it; None where
    the peak cannot be reset (not Linux with glibc)."""
    try:
        _mmap_large_blocks()
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = _rss_kib("VmRSS")
        with torch.no_grad():
            step(z)
        return round((_rss_kib("VmHWM") - before) / 1024, 1)
    except (OSError, AttributeError):
        return None


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


def _code(collage, config: dict[str, Any], x: torch.Tensor):
    from collagekit.search import search

    if collage.sparse:
        return search(collage, x, ranges=config.get("ranges", math.prod(collage.partitioner.range_grid(tuple(x.shape[2:])))))
    from collagekit.fit import FitSettings, refine
    from collagekit.solver import Anderson

    code, _ = refine(x, collage, Anderson(), collage.init_params(x), FitSettings(steps=0, collage_steps=3, lr=0.05))
    return code


def measure(x: torch.Tensor, registry, device: torch.device) -> list[dict[str, Any]]:
    """x: (1 3 512 512) -> one row per configuration and scale."""
    if device.type == "cpu":
        try:
            _mmap_large_blocks()  # before the codes are made, so every later block is mapped on its own
        except (OSError, AttributeError):
            pass
    from collagekit.config import CollageConfig
    from collagekit.recipe import RecipeModels

    models = RecipeModels(registry).specialize(CollageConfig)
    spatial = tuple(x.shape[2:])
    rows = []
    for name, config in CONFIGS.items():
        collage_cfg = models.model_validate({
            "partitioner": config["partitioner"], "auxiliary": [{"name": "dihedral"}], "mixing": config["mixing"],
        })  # fmt: skip
        collage = collage_cfg.build(registry).to(device)
        code = _code(collage, config, x.to(device))
        sources = collage.num_sources(spatial)[0] if not collage.sparse else collage.sources
        leaves = code.leaves if collage.sparse else collage.partitioner.num_ranges(spatial) * 3
        for scale in SCALES:
            step = collage.step_fn(code, spatial, scale)
            z = torch.rand(1, 3, *(s * scale for s in spatial), device=device)
            with torch.no_grad():
                step(z)  # warm-up: plans, allocator
                timed = median_time(lambda: step(z), REPEATS, device)  # wall and CPU, device synchronised
            rows.append({
                "configuration": name, "scale": scale, "ranges": leaves, "sources_per_range": sources,
                "step_ms": round(timed.seconds * 1000, 2), "step_cpu_ms": round(timed.cpu_seconds * 1000, 2),
                "step_memory_mb": peak_step_memory(step, z) if device.type == "cpu" else _cuda_peak(step, z, device),
                "held_memory_mb": held_memory(collage, code, spatial, scale),
            })  # fmt: skip
            print(f"{name} x{scale}: {rows[-1]['step_ms']} ms, {rows[-1]['step_memory_mb']} MB per step, {rows[-1]['held_memory_mb']} MB held")
        del collage, code
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

