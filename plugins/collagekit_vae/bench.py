"""``collagekit bench vae``: rate, distortion and ELBO of trained VAEs on 1,000 held-out MNIST images.

By default it scores the shipped models (``mnist``, ``mnist-conv``) on the **test** images: the final
figure. ``models=DIR`` scores every ``model.safetensors`` under DIR instead (e.g. a β sweep: one training
folder per decoder and β) on the **validation** images, where variants are chosen. ``split=`` overrides
either default; a model whose training images reach into the scored images is refused.

Each run fills one **section** of ``docs/results/vae.{md,json}`` and keeps the others, so scoring the
shipped models does not erase a sweep that took an hour to train. ``section=NAME`` names it (default
``shipped``, or ``sweep`` with ``models=``). Within a section:

* rows are grouped into *variants* (decoder, heads, auxiliary cells); a variant trained at several β
  gets its distortion spread across β and a line in the rate-distortion plot (matplotlib);
* every collage row at β = 1 is compared with each conv row at β = 1 that has the same heads: the
  relative ELBO gap, against the 5 % target;
* the first collage model at β = 1 draws the magnification figure and is timed sampling at 1x, 4x and
  40x (median of ``repeats`` after a warm-up; the device is named).

All figures are nats per image on one fixed binarisation of the scored images (validation: the
``validation_count`` images after the first ``train_count``, 8,000 and 1,000 by default; test: the rest),
``samples`` posterior draws per image (``samples=1`` by default). ``note="..."`` adds a line to the
section (e.g. how the models were trained, or that the machine was shared). Each section keeps the
conditions of the run that wrote it.
"""

from __future__ import annotations

import json
import re
import shlex
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from collagekit.bench import BenchContext, write_results
from collagekit.errors import CollagekitError
from collagekit.timing import median_time

if TYPE_CHECKING:
    from collagekit_vae.model import HierarchicalVAE, VAEConfig

SCALES = (1, 4, 40)
SECTION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
SECTION_ORDER = ("shipped", "validation", "validation-shipped", "sweep")  # then the others, by name


def _model_files(ctx: BenchContext) -> list[str | Path]:
    from collagekit_vae.store import SHIPPED

    folder = ctx.option("models")
    if folder is None:
        return list(SHIPPED)
    files = sorted(Path(str(folder)).rglob("model.safetensors"))
    if not files:
        raise CollagekitError(f"no model.safetensors under {str(folder)!r}")
    return files


def _section(ctx: BenchContext) -> str:
    name = ctx.option("section") or ("shipped" if ctx.option("models") is None else "sweep")
    if not SECTION_NAME.fullmatch(name):
        raise CollagekitError(f"section={name!r}: use 1 to 40 lower-case letters, digits, '-' or '_' (it names the figures)")
    return name


def _held_out(ctx: BenchContext) -> str:
    """The set a run scores: test for the shipped models (the final report), validation for any other."""
    return ctx.option("split") or ("test" if ctx.option("models") is None else "validation")


def _check_training_set(checkpoint: str | Path, info: dict[str, Any], train_count: int) -> None:
    """Refuse a model trained on more images than the bench takes as training images: it has seen some
    of the images it would be scored on. (Models written before the split recorded no count.)"""
    trained_on = info["metrics"].get("train_images")
    if trained_on is not None and trained_on > train_count:
        raise CollagekitError(
            f"{checkpoint} was trained on the first {trained_on} images, which include images this run scores: "
            f"pass train_count={trained_on} (and a validation_count that leaves test images) or retrain it"
        )


def _earlier_sections(path: Path) -> dict[str, dict[str, Any]]:
    """The sections an earlier run wrote to ``vae.json`` (none if there is no such file)."""
    if not path.is_file():
        return {}
    try:
        sections = json.loads(path.read_text())["sections"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CollagekitError(f"{path} holds no readable sections: move it away to start the results afresh") from None
    if not isinstance(sections, dict):
        raise CollagekitError(f"{path} holds no readable sections: move it away to start the results afresh")
    return sections


def _variant(config: VAEConfig) -> dict[str, str]:
    """What tells models apart beside decoder and β: the two heads (and whether q is residual on p),
    the per-cell latent (and whether a network maps it to the collage code), the auxiliary cells."""
    collage = config.decoder == "collage"
    aux = [f"{a.name}×{a.count}" if hasattr(a, "count") else a.name for a in config.collage.auxiliary]
    if not collage:
        latent = str(config.conv_latent)
    else:
        latent = f"{config.code_latent} → code" if config.code_latent else "the code"
    return {
        "heads": f"{config.prior.name} / {config.posterior.name}" + (", residual q" if config.residual_posterior else ""),
        "latent": latent,
        "auxiliary": ", ".join(aux) if collage and aux else "none",
    }


def _label(row: dict[str, Any]) -> str:
    extra = "" if row["auxiliary"] == "none" else f", {row['auxiliary']}"
    latent = f", latent {row['latent']}" if row.get("latent", "the code") != "the code" and row["decoder"] == "collage" else ""
    return f"{row['decoder']} ({row['heads']}{latent}{extra})"


def _timings(model: HierarchicalVAE, device: torch.device, repeats: int) -> dict[str, float]:
    from collagekit_vae.sample import sample

    out = {}
    for scale in SCALES:
        n = 16 if scale < 40 else 1
        sample(model, n, scale)  # warm-up, untimed
        seconds = median_time(lambda n=n, scale=scale: sample(model, n, scale), repeats, device).seconds
        out[f"sample_{scale}x_ms_per_image"] = round(1000 * seconds / n, 2)
    return out


def _sweeps(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Variant label -> its rows, by β, for the variants trained at two or more β."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_label(row), []).append(row)
    return {label: sorted(g, key=lambda r: r["beta"]) for label, g in groups.items() if len({r["beta"] for r in g}) > 1}


def _rd_plot(sweeps: dict[str, list[dict[str, Any]]], scored: str, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CollagekitError("the rate-distortion plot needs matplotlib (pip install matplotlib)") from None
    from collagekit.fileio import atomic_output

    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    for (label, pts), marker in zip(sweeps.items(), "os^vD<>"):
        ax.plot([p["rate"] for p in pts], [p["distortion"] for p in pts], marker=marker, label=label)
        for p in pts:
            ax.annotate(f"β={p['beta']:g}", (p["rate"], p["distortion"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("rate: KL (nats)")
    ax.set_ylabel("distortion: NLL (nats)")
    ax.set_title(f"Dynamically binarised MNIST, {scored}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _spread(rows: list[dict[str, Any]]) -> dict[str, float]:
    values = [r["distortion"] for r in rows]
    spread = max(values) - min(values)
    return {
        "range": round(spread, 3),
        "stdev": round(statistics.stdev(values), 3),
        "relative_range": round(spread / statistics.mean(values), 4),  # range / mean distortion
    }


def _gaps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every collage row at β = 1 against every conv row at β = 1 with the same heads."""
    at_one = [r for r in rows if r["beta"] == 1.0]
    out = []
    for row in (r for r in at_one if r["decoder"] == "collage"):
        for conv in (r for r in at_one if r["decoder"] == "conv" and r["heads"] == row["heads"]):
            gap = (conv["elbo"] - row["elbo"]) / abs(conv["elbo"])  # > 0: the collage VAE's ELBO is that fraction worse
            out.append({"collage": row["model"], "conv": conv["model"], "gap": round(gap, 4), "within_5_percent": bool(gap <= 0.05)})
    return out


def run(ctx: BenchContext) -> dict[str, Any]:
    from collagekit.registry import get_registry
    from collagekit_vae.evaluate import evaluate
    from collagekit_vae.mnist import fixed_binarization, split
    from collagekit_vae.model import count_parameters
    from collagekit_vae.sample import magnification_figure
    from collagekit_vae.store import load_model

    section = _section(ctx)
    note = ctx.option("note")
    earlier = _earlier_sections(ctx.out / "vae.json")  # before the long part: a bad file fails fast
    samples, repeats = ctx.option("samples"), ctx.option("repeats")
    which, train_count, validation_count = _held_out(ctx), ctx.option("train_count"), ctx.option("validation_count")
    parts = split(ctx.data, train_count, validation_count)
    x = fixed_binarization(parts.validation if which == "validation" else parts.test)  # the other set is never scored
    first = train_count if which == "validation" else train_count + validation_count
    registry = get_registry()
    rows: list[dict[str, Any]] = []
    collage_at_one = None
    for checkpoint in _model_files(ctx):
        model, info = load_model(checkpoint, registry)
        _check_training_set(checkpoint, info, train_count)
        model.to(ctx.device)
        scores = evaluate(model, x, samples=samples)
        rows.append({
            "model": str(checkpoint) if isinstance(checkpoint, str) else str(Path(checkpoint).parent.name),
            "decoder": model.config.decoder,
            **_variant(model.config),
            "beta": info["beta"],
            "parameters": count_parameters(model),
            "train_steps": info["metrics"].get("steps"),
            "train_images": info["metrics"].get("train_images"),
            **{k: round(v, 3) for k, v in scores.items()},
        })  # fmt: skip
        if collage_at_one is None and model.config.decoder == "collage" and info["beta"] == 1.0:
            collage_at_one = model

    rows.sort(key=lambda r: (r["decoder"], r["heads"], r["auxiliary"], r["beta"], r["model"]))
    results: dict[str, Any] = {
        "set": which,
        "images": [first, first + len(x)],  # indices [start, stop) in the MNIST test file
        "conditions": ctx.conditions,
        "posterior_samples": samples,
        "note": note,
        "models": rows,
        "figures": {},
    }
    if gaps := _gaps(rows):
        results["elbo_gaps_at_beta_1"] = gaps
    if sweeps := _sweeps(rows):
        results["distortion_spread_across_beta"] = {label: _spread(group) for label, group in sweeps.items()}
        results["figures"]["rate_distortion"] = f"vae_rd_{section}.png"
        ctx.out.mkdir(parents=True, exist_ok=True)
        _rd_plot(sweeps, f"{which} images {first:,}-{first + len(x) - 1:,}", ctx.out / results["figures"]["rate_distortion"])
    if collage_at_one is not None:
        results["figures"]["magnification"] = f"vae_magnification_{section}.png"
        magnification_figure(collage_at_one, ctx.out / results["figures"]["magnification"])
        results["sampling"] = _timings(collage_at_one, ctx.device, repeats)

    sections = {**earlier, section: results}
    write_results(ctx, "vae", _markdown(sections), {"sections": sections})
    summary = {f"{r['model']} elbo": r["elbo"] for r in rows}
    shown = ("set", "posterior_samples", "elbo_gaps_at_beta_1", "distortion_spread_across_beta", "sampling")
    return {"section": section, **summary, **{k: results[k] for k in shown if k in results}}


# ---------------------------------------------------------------- the report
def _markdown(sections: dict[str, dict[str, Any]]) -> str:
    order = sorted(sections, key=lambda s: (SECTION_ORDER.index(s) if s in SECTION_ORDER else len(SECTION_ORDER), s))
    lines = [
        "# Collage VAE vs convolutional VAE on dynamically binarised MNIST",
        "",
        "Written by `collagekit bench vae`: one section per run (`section=NAME`; `shipped` scores the shipped "
        "models, `models=DIR` scores the trained models under DIR); a run replaces its own section only. "
        "The MNIST test file (the only MNIST split here) is cut in order: images 0-7,999 train, 8,000-8,999 "
        "validate (every choice between variants is made there), 9,000-9,999 test (scored for the final figure "
        "of the shipped models only). Each section says which set it scored, one fixed binarisation. Nats per image.",
    ]
    for name in order:
        lines += ["", *_section_markdown(name, sections[name])]
    return "\n".join(lines) + "\n"


def _scored_on(results: dict[str, Any]) -> str:
    """Which images a section scored and the models' training images, and the run's conditions."""
    samples = f"{results['posterior_samples']} posterior sample(s) per image"
    if "set" not in results:  # written before the validation split: say what that means
        return (
            f"**Scored on the test images (9,000-9,999), models trained on images 0-8,999**: measured before the "
            f"validation split, when variants were chosen on these test images. On {results['device']}, {samples}."
        )
    start, stop = results["images"]
    trained = sorted({r["train_images"] for r in results["models"] if r.get("train_images") is not None})
    trained_text = ", ".join(f"0-{n - 1:,}" for n in trained) or "not recorded"
    c = results["conditions"]
    # the note is printed below the line: the command names it only
    command = shlex.join("note=(below)" if arg.startswith("note=") else arg for arg in shlex.split(c["command"]))
    return (
        f"**Scored on the {results['set']} images ({start:,}-{stop - 1:,}), models trained on images {trained_text}.** "
        f"{samples.capitalize()}. `{command}` at {c['commit']}, {c['device']}, {c['threads']} thread(s), "
        f"load {c['load_average_start']} at the start, {c['date']}."
    )


def _section_markdown(name: str, results: dict[str, Any]) -> list[str]:
    lines = [
        f"## {name}",
        "",
        _scored_on(results),
        "",
        *([results["note"], ""] if results["note"] else []),
        "| model | decoder | heads (prior / posterior) | per-cell latent | auxiliary cells | β | parameters | steps | rate (KL) | distortion (NLL) | ELBO |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["models"]:
        latent = r.get("latent", "—")  # not recorded by sections written before the code network
        lines.append(
            f"| {r['model']} | {r['decoder']} | {r['heads']} | {latent} | {r['auxiliary']} | {r['beta']:g} | {r['parameters']:,} | "
            f"{r['train_steps']} | {r['rate']:.2f} | {r['distortion']:.2f} | {r['elbo']:.2f} |"
        )
    gaps = results.get("elbo_gaps_at_beta_1", [])
    if gaps:
        lines += ["", "ELBO gap at β = 1 (collage vs the conv model with the same heads, relative to the conv ELBO):", ""]
        for g in gaps:
            verdict = "within" if g["within_5_percent"] else "outside"
            lines.append(f"- {g['collage']} vs {g['conv']}: {100 * g['gap']:.2f} % ({verdict} the 5 % target)")
    figures = results.get("figures", {})
    if "distortion_spread_across_beta" in results:
        lines += ["", "Distortion across the β sweep: max − min and standard deviation in nats, and max − min over the mean:", ""]
        for label, s in results["distortion_spread_across_beta"].items():
            lines.append(f"- {label}: range {s['range']:.2f}, stdev {s['stdev']:.2f}, relative range {100 * s['relative_range']:.1f} %")
        lines += ["", f"![rate-distortion]({figures['rate_distortion']})"]
    if "sampling" in results:
        lines += ["", "Sampling time per image (the first collage VAE at β = 1, median after warm-up):", ""]
        keys = [f"sample_{scale}x_ms_per_image" for scale in SCALES]  # by scale: the JSON sorts its keys
        lines += [f"- {k}: {results['sampling'][k]} ms" for k in keys if k in results["sampling"]]
        lines += ["", f"![magnification]({figures['magnification']})"]
    return lines

