"""``collagekit bench audio-fractalize``: audio fractalization — does the code represent its input?

For every clip: ``collagekit fractalize`` with the audio defaults (an adaptive, sparse collage coded by
the least-squares search and refined on its attractor), then the saved ``.clg`` decoded and written
as 16-bit PCM at scale 1 and at scale 2 (twice the sample rate). Reported: the code's size against the
clip's 16-bit PCM, SNR (signal power over error power: what tells a real reconstruction from noise)
beside PSNR (peak 2: reads high on any quiet clip), the mel log-spectral distance, the fit time, and
the scale-2 decode brought back to the clip's rate twice — averaging each pair of samples (which
the collage maps to the scale-1 attractor exactly) and torchaudio's band-limited resampler.

Options (:class:`collagekit_audio.config.AudioFractalizeBenchOptions`): ``clips`` (``test``, the default:
the split's test clips, :mod:`collagekit_audio.splits`; ``validation``: where the defaults are judged;
or comma-separated file stems), ``sample`` (also the shipped 1 s sample; default with the test clips),
``seconds`` (only the first S seconds of each clip), ``results`` (the results file's name); any other
``key=value`` is a field of the fractalize task (e.g. ``encoder.steps=200``), recorded in the results.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from collagekit.bench import BenchContext, write_results
from collagekit.errors import CollagekitError

TARGET_SNR_DB = 15.0
TARGET_RATIO = 0.25


OPTIONS = ("clips", "sample", "seconds", "results")


def _fractalize(path: Path, out: Path, settings: list[tuple[list[str | int], Any]], registry, device: str) -> dict[str, Any]:
    from collagekit.recipe import override, validate_data
    from collagekit.tasks import run_task

    data: dict[str, Any] = {"task": "audio_fractalize", "input": str(path), "output": str(out), "scale": 1, "device": device}
    for key, value in settings:
        override(data, key, value, registry)
    return run_task(validate_data(data, registry, "bench audio-fractalize"), registry, device)


def _clips(ctx: BenchContext) -> list[Path]:
    """The clips ``clips=`` names: a split of :mod:`collagekit_audio.splits` or file stems in the data folder."""
    from collagekit_audio.splits import SPLITS

    given = ctx.option("clips")
    names = SPLITS[given] if given in ("test", "validation") else [name for name in given.split(",") if name]
    paths = []
    for name in names:
        found = sorted(ctx.data.glob(f"{name}.*"))
        if not found:
            raise CollagekitError(f"clip {name!r} is not in {ctx.data}")
        paths.append(found[0])
    return paths


def _clip_row(path: Path, seconds: float | None, settings: list, registry, ctx: BenchContext, tmp: Path) -> dict[str, Any]:
    import soundfile as sf
    import torchaudio.functional as AF

    from collagekit.container import read_container
    from collagekit.gridcodec import GridCollageCodec, decode_grid
    from collagekit.metrics import psnr_float, snr
    from collagekit_audio.features import mel_distance_db

    source = path
    if seconds is not None:
        samples, rate = sf.read(path, dtype="int16", always_2d=True)
        source = tmp / f"{path.stem}_{seconds:g}s.wav"
        sf.write(source, samples[: int(rate * seconds)], rate, subtype="PCM_16")
    reference, rate = sf.read(source, dtype="float32", always_2d=True)
    x = torch.from_numpy(reference.T.copy())  # (c n) in [-1, 1]
    out = tmp / f"{path.stem}.wav"
    metrics = _fractalize(source, out, settings, registry, str(ctx.device))
    decoded = torch.from_numpy(sf.read(out, dtype="float32", always_2d=True)[0].T.copy())
    collage, params, solver, shape = GridCollageCodec.unpack(read_container(out.with_suffix(".clg")), registry)
    double = decode_grid(collage, params, solver, shape, 2, ctx.device).cpu()[0] * 2 - 1  # (c 2n), [-1, 1]
    averaged = double.view(double.shape[0], -1, 2).mean(-1)
    resampled = AF.resample(double, 2 * rate, rate)[:, : x.shape[1]]
    pcm = x.numel() * 2
    return {
        "clip": path.stem,
        "seconds": round(x.shape[1] / rate, 2),
        "sample_rate": rate,
        "channels": x.shape[0],
        "code_bytes": metrics["code_bytes"],
        "code_to_pcm16": round(metrics["code_bytes"] / pcm, 4),
        "snr_db": round(snr(x, decoded), 2),
        "psnr_db": round(psnr_float(x, decoded, 2.0), 2),
        "mel_distance_db": mel_distance_db(x, decoded, rate),
        "scale2_averaged_snr_db": round(snr(x, averaged), 2),
        "scale2_resampled_snr_db": round(snr(x, resampled), 2),
        "fit_seconds": metrics["fit_seconds"],
        "lipschitz_bound": metrics["lipschitz_bound"],
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    from collagekit.registry import get_registry
    from collagekit_audio.tasks import sample_audio

    registry = get_registry()
    seconds = ctx.option("seconds")
    settings = [(path, value) for path, value in ctx.overrides if not (len(path) == 1 and path[0] in OPTIONS)]
    sample = ctx.option("sample")
    paths = ([sample_audio()] if (ctx.option("clips") == "test" if sample is None else sample) else []) + _clips(ctx)
    if not paths:
        raise CollagekitError("no clip to fractalize: name clips=..., or sample=true")
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            rows.append(_clip_row(path, seconds, settings, registry, ctx, Path(tmp)))
            r = rows[-1]
            print(f"{r['clip']}: {r['snr_db']} dB SNR at {r['code_to_pcm16']:.3f} of the PCM, fit {r['fit_seconds']} s")
    met = [r["snr_db"] >= TARGET_SNR_DB and r["code_to_pcm16"] <= TARGET_RATIO for r in rows]
    changed = {".".join(map(str, key)): value for key, value in settings}
    summary = {"clip_set": ctx.option("clips"), "seconds_per_clip": seconds, "settings": changed, "clips": len(rows),
               "targets_met": sum(met), "wall_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    lines = [
        "# Audio fractalization: does the code represent its input?",
        "",
        "`collagekit bench audio-fractalize`: `collagekit fractalize CLIP` with the audio defaults (a binary tree of",
        "segments from 256 down to 4 samples, each a copy of one segment twice as long, forwards or backwards, chosen by",
        "the least-squares search within one segment per 13 samples, then 100 gradient steps on the attractor), the",
        "saved code decoded and written as 16-bit PCM. SNR = signal power / error power; PSNR with peak 2 (reads high on",
        "quiet clips whatever happens). Scale 2: the code decoded at twice the rate, brought back by averaging sample",
        "pairs (exactly the scale-1 attractor for this collage) and by torchaudio's resampler. Target (issue 19):",
        f"SNR >= {TARGET_SNR_DB:g} dB with a code <= {TARGET_RATIO:g} of the 16-bit PCM.",
        "",
        f"Clips: {summary['clip_set']} ({'whole' if seconds is None else f'the first {seconds:g} s of each'}); settings changed from the"
        f" defaults: {', '.join(f'`{k}={v}`' for k, v in changed.items()) or 'none'}.",
        "",
        "| clip | s | rate | code / PCM16 | SNR dB | PSNR dB | mel LSD dB | scale 2: averaged / resampled SNR dB | fit s | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r, ok in zip(rows, met):
        mel = "n/a" if r["mel_distance_db"] is None else f"{r['mel_distance_db']:.2f}"
        lines.append(f"| {r['clip']} | {r['seconds']} | {r['sample_rate']} x {r['channels']} | {r['code_to_pcm16']:.3f} | {r['snr_db']} | "
                     f"{r['psnr_db']} | {mel} | {r['scale2_averaged_snr_db']} / {r['scale2_resampled_snr_db']} | {r['fit_seconds']} | "
                     f"{'met' if ok else 'missed'} |")  # fmt: skip
    lines += ["", f"{summary['targets_met']} of {summary['clips']} clips meet the target; {summary['wall_seconds']} s in all.", ""]
    write_results(ctx, ctx.option("results") or "audio_fractalize", "\n".join(lines), {"summary": summary, "clips": rows})
    return summary

