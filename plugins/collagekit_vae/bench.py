"""``collagekit bench vae``: test rate, distortion and ELBO of trained VAEs on the 1,000 held-out MNIST images.

By default it scores the shipped models (``mnist``, ``mnist-conv``); ``models=DIR`` scores every
``model.safetensors`` under DIR instead (e.g. a β sweep: one training folder per decoder and β). With
several β per decoder it also draws the rate-distortion plot (matplotlib) and reports how much each
decoder's distortion moves across β. It draws the magnification figure from the collage model with
β = 1 (else the first collage model) and times sampling at 1x, 4x and 40x (median of ``repeats``
after a warm-up; the device is named).

All figures are nats per image on one fixed binarisation of the test images, ``samples`` posterior
draws per image (``samples=1`` by default). ``note="..."`` adds a line to the report (e.g. how the
models were trained, or that the machine was shared).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from collagekit.bench import BenchContext, Benchmark, write_results
from collagekit.errors import CollagekitError

if TYPE_CHECKING:
    from collagekit_vae.model import HierarchicalVAE

SCALES = (1, 4, 40)


def _model_files(ctx: BenchContext) -> list[str | Path]:
    from collagekit_vae.store import SHIPPED

    folder = ctx.option("models", None)
    if folder is None:
        return list(SHIPPED)
    files = sorted(Path(str(folder)).rglob("model.safetensors"))
    if not files:
        raise CollagekitError(f"no model.safetensors under {str(folder)!r}")
    return files


def _timings(model: HierarchicalVAE, device: torch.device, repeats: int) -> dict[str, float]:
    from collagekit_vae.sample import sample

    out = {}
    for scale in SCALES:
        n = 16 if scale < 40 else 1
        sample(model, n, scale)  # warm-up, untimed
        runs = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            sample(model, n, scale)
            if device.type == "cuda":
                torch.cuda.synchronize()
            runs.append(time.perf_counter() - started)
        out[f"sample_{scale}x_ms_per_image"] = round(1000 * statistics.median(runs) / n, 2)
    return out


def _rd_plot(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CollagekitError("the rate-distortion plot needs matplotlib (pip install matplotlib)") from None
    from collagekit.fileio import atomic_output

    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    for decoder, marker in (("collage", "o"), ("conv", "s")):
        pts = sorted((r["beta"], r["rate"], r["distortion"]) for r in rows if r["decoder"] == decoder)
        if not pts:
            continue
        ax.plot([p[1] for p in pts], [p[2] for p in pts], marker=marker, label=f"{decoder} VAE")
        for beta, rate, dist in pts:
            ax.annotate(f"β={beta:g}", (rate, dist), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("rate: test KL (nats)")
    ax.set_ylabel("distortion: test NLL (nats)")
    ax.set_title("Dynamically binarised MNIST, 1,000 test images")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _spread(rows: list[dict[str, Any]], decoder: str) -> dict[str, float] | None:
    values = [r["distortion"] for r in rows if r["decoder"] == decoder]
    if len(values) < 2:
        return None
    spread = max(values) - min(values)
    return {
        "range": round(spread, 3),
        "stdev": round(statistics.stdev(values), 3),
        "relative_range": round(spread / statistics.mean(values), 4),  # range / mean distortion
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    from collagekit.registry import get_registry
    from collagekit_vae.evaluate import evaluate
    from collagekit_vae.mnist import fixed_binarization, split
    from collagekit_vae.model import count_parameters
    from collagekit_vae.sample import magnification_figure
    from collagekit_vae.store import load_model

    samples = int(ctx.option("samples", 1))
    repeats = int(ctx.option("repeats", 3))
    x = fixed_binarization(split(ctx.data)[1])
    registry = get_registry()
    rows: list[dict[str, Any]] = []
    models = {}
    for checkpoint in _model_files(ctx):
        model, info = load_model(checkpoint, registry)
        model.to(ctx.device)
        scores = evaluate(model, x, samples=samples)
        rows.append({
            "model": str(checkpoint) if isinstance(checkpoint, str) else str(Path(checkpoint).parent.name),
            "decoder": model.config.decoder,
            "beta": info["beta"],
            "parameters": count_parameters(model),
            "train_steps": info["metrics"].get("steps"),
            **{k: round(v, 3) for k, v in scores.items()},
        })  # fmt: skip
        models[(model.config.decoder, info["beta"])] = model

    rows.sort(key=lambda r: (r["decoder"], r["beta"]))
    results: dict[str, Any] = {
        "device": str(ctx.device),
        "cpu_threads": torch.get_num_threads(),
        "test_images": len(x),
        "posterior_samples": samples,
        "note": str(ctx.option("note", "")),
        "models": rows,
    }
    at_one = {r["decoder"]: r for r in rows if r["beta"] == 1.0}
    if {"collage", "conv"} <= set(at_one):
        gap = (at_one["conv"]["elbo"] - at_one["collage"]["elbo"]) / abs(at_one["conv"]["elbo"])
        results["elbo_gap_at_beta_1"] = round(gap, 4)  # > 0: the collage VAE's ELBO is that fraction worse
        results["elbo_within_5_percent"] = bool(gap <= 0.05)
    spreads = {d: s for d in ("collage", "conv") if (s := _spread(rows, d)) is not None}
    if spreads:
        results["distortion_spread_across_beta"] = spreads
        ctx.out.mkdir(parents=True, exist_ok=True)
        _rd_plot(rows, ctx.out / "vae_rd.png")
    collage = models.get(("collage", 1.0)) or next((m for (d, _), m in models.items() if d == "collage"), None)
    if collage is not None:
        magnification_figure(collage, ctx.out / "vae_magnification.png")
        results["sampling"] = _timings(collage, ctx.device, repeats)

    write_results(ctx.out, "vae", _markdown(results), results)
    summary = {f"{r['decoder']} β={r['beta']:g} elbo": r["elbo"] for r in rows}
    return {**summary, **{k: v for k, v in results.items() if k not in ("models", "note")}}


def _markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Collage VAE vs convolutional VAE on dynamically binarised MNIST",
        "",
        f"`collagekit bench vae` on {results['device']}: {results['test_images']} held-out test images (the last 1,000 of "
        f"the MNIST test split; training used the first 9,000), one fixed binarisation, "
        f"{results['posterior_samples']} posterior sample(s) per image. Nats per image.",
        "",
        *([results["note"], ""] if results["note"] else []),
        "| decoder | β | parameters | steps | rate (KL) | distortion (NLL) | ELBO |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["models"]:
        lines.append(
            f"| {r['decoder']} | {r['beta']:g} | {r['parameters']:,} | {r['train_steps']} | {r['rate']:.2f} | {r['distortion']:.2f} | {r['elbo']:.2f} |"
        )
    if "elbo_gap_at_beta_1" in results:
        lines += ["", f"ELBO gap at β = 1 (collage vs conv, relative): {100 * results['elbo_gap_at_beta_1']:.2f} % "
                  f"({'within' if results['elbo_within_5_percent'] else 'outside'} the 5 % target)."]  # fmt: skip
    if "distortion_spread_across_beta" in results:
        lines += ["", "Distortion across the β sweep: max − min and standard deviation in nats, and max − min over the mean:", ""]
        for decoder, s in results["distortion_spread_across_beta"].items():
            lines.append(f"- {decoder}: range {s['range']:.2f}, stdev {s['stdev']:.2f}, relative range {100 * s['relative_range']:.1f} %")
        lines += ["", "![rate-distortion](vae_rd.png)"]
    if "sampling" in results:
        lines += ["", "Sampling time per image (collage VAE, median after warm-up):", ""]
        lines += [f"- {k}: {v} ms" for k, v in results["sampling"].items()]
        lines += ["", "![magnification](vae_magnification.png)"]
    return "\n".join(lines) + "\n"


VAE_BENCH = Benchmark(
    name="vae",
    description="Collage VAE vs conv VAE on MNIST: test rate, distortion, ELBO; β sweep plot; magnification figure",
    run=run,
    default_data="mnist",
)
