"""``collagekit bench audio``: the shipped Neural Collage audio models on a set of clips, next to MP3,
Ogg Vorbis and Ogg Opus (libsndfile through soundfile) at matched bitrates.

Which clips (option ``clips``): ``test`` (default: the split's test clips, :mod:`collagekit_audio.splits`,
the headline), ``validation`` (where choices are judged), or ``all`` (every audio file in the data folder,
any name; its kind from the name's prefix, speech_ / music_ / other). Every row says whether the models
benchmarked trained on that clip (their files' ``made_by`` metadata lists the clips), and the means by
kind are taken apart for clips trained on and not, each with the number of clips it covers.

Every figure is measured on what is stored (DESIGN section 4): rates from file bytes x 8 / duration;
SNR (signal power over error power) beside PSNR (20 log10(2 / rmse) on the waveform in [-1, 1]: high on
any quiet clip whatever happens) between the clip's samples and the decoded file read back as 16-bit
PCM. Baselines are compared at our rates by interpolating each clip's (rate, quality) curve in log-rate
(:func:`collagekit.metrics.at_rate`; never extrapolated). Opus codes only 8/12/16/24/48 kHz: other
rates go through 48 kHz (torchaudio's resampler, both ways, counted in Opus's error), as an Opus
encoder does. Encode and decode times: median of ``repeats`` runs after an untimed warm-up, as x real time.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from collagekit.bench import BenchContext, write_results
from collagekit.errors import CollagekitError
from collagekit.metrics import at_rate

# Targets of the audio codec (issue 6), per clip.
SPEECH_TARGET = {"kbit_per_s": 16.0, "psnr_db": 40.0}
MUSIC_TARGET = {"compression_factor": 10.0, "psnr_db": 39.0}
SPEED_TARGET = 100.0  # encode x real time
# name -> soundfile format, subtype, suffix, bitrate_mode, compression levels (0 = most bits). MP3 in
# average-bitrate mode: its variable mode stops at about 21 kbit/s on 16 kHz speech, above our rates.
BASELINES = {
    "mp3": ("MP3", "MPEG_LAYER_III", ".mp3", "AVERAGE", (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)),
    "vorbis": ("OGG", "VORBIS", ".ogg", None, (0.0, 0.3, 0.5, 0.7, 0.9, 0.99)),
    "opus": ("OGG", "OPUS", ".opus", None, (0.8, 0.9, 0.95, 0.97, 0.99, 1.0)),
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MEASURES = ("snr_db", "psnr_db", "mel_distance_db")
SPLIT_CHOICES = ("test", "validation", "all")


def baselines_here() -> dict[str, tuple]:
    """The baselines this libsndfile writes (Opus needs libsndfile >= 1.0.29)."""
    import soundfile as sf

    return {name: spec for name, spec in BASELINES.items() if spec[1] in sf.available_subtypes(spec[0])}


def select_clips(data: Path, which: str) -> list[Path]:
    """The clips ``clips=which`` names in ``data``: a split's (each must be there) or every audio file."""
    from collagekit_audio.config import SUFFIXES
    from collagekit_audio.splits import SPLITS

    if which not in SPLIT_CHOICES:
        raise CollagekitError(f"clips={which!r}: choose one of {', '.join(SPLIT_CHOICES)}")
    audio = sorted(p for p in data.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if which == "all":
        if not audio:
            raise CollagekitError(f"no audio file ({', '.join(SUFFIXES)}) in {data}")
        return audio
    by_stem = {p.stem: p for p in audio}
    missing = [stem for stem in SPLITS[which] if stem not in by_stem]
    if missing:
        raise CollagekitError(f"{which} clip(s) not found in {data}: {', '.join(missing)} (pass --data DIR holding them, or clips=all)")
    return [by_stem[stem] for stem in SPLITS[which]]


def trained_on(models: list[str]) -> set[str]:
    """Stems of the clips any of ``models`` was trained on (from its file's ``made_by`` metadata)."""
    from collagekit_audio.pretrained import STORE

    stems: set[str] = set()
    for model in models:
        made_by = json.loads(STORE.load(model).metadata.get("made_by", "{}"))
        stems |= {Path(name).stem for name in made_by.get("clips", [])}
    return stems


def _opus_round_trip(samples: np.ndarray, rate: int, path: Path, level: float) -> np.ndarray:
    """Encode at ``level`` (through 48 kHz where Opus cannot code ``rate``) -> decoded (n c) at ``rate``."""
    import soundfile as sf
    import torchaudio.functional as AF

    coded_rate = rate if rate in OPUS_RATES else 48000
    wave = torch.from_numpy(samples.T.copy())  # (c n)
    if coded_rate != rate:
        wave = AF.resample(wave, rate, coded_rate)
    sf.write(str(path), wave.T.numpy(), coded_rate, format="OGG", subtype="OPUS", compression_level=level)
    decoded = torch.from_numpy(sf.read(str(path), dtype="float32", always_2d=True)[0].T.copy())
    if coded_rate != rate:
        decoded = AF.resample(decoded, coded_rate, rate)[:, : samples.shape[0]]
    return decoded.T.numpy()


def _baseline_points(samples: np.ndarray, rate: int, seconds: float, folder: Path) -> dict[str, list[dict[str, float]]]:
    """(n c) float samples -> each baseline codec -> [{level, kbit_per_s, snr_db, psnr_db, mel_distance_db}]."""
    import soundfile as sf

    from collagekit_audio.compress import waveform_quality

    reference = torch.from_numpy(samples.T.copy())[None]
    out: dict[str, list[dict[str, float]]] = {}
    for name, (fmt, subtype, suffix, mode, levels) in baselines_here().items():
        rows = []
        for level in levels:
            path = folder / f"{name}{suffix}"
            if name == "opus":
                decoded = _opus_round_trip(samples, rate, path, level)
            else:
                sf.write(str(path), samples, rate, format=fmt, subtype=subtype, compression_level=level, bitrate_mode=mode)
                decoded = sf.read(str(path), dtype="float32", always_2d=True)[0]
            if decoded.shape != samples.shape:  # libsndfile removes the codecs' delay and padding
                raise CollagekitError(f"{name} at level {level} decoded {decoded.shape} samples from {samples.shape}")
            quality = waveform_quality((reference + 1) / 2, (torch.from_numpy(decoded.T.copy())[None] + 1) / 2, rate)
            rows.append({"level": level, "kbit_per_s": round(path.stat().st_size * 8 / seconds / 1000, 3), **quality})
        out[name] = rows
    return out


def _collage_points(path: Path, ctx: BenchContext, models: list[str], repeats: int, folder: Path) -> list[dict[str, Any]]:
    from collagekit.container import SIGNAL_ATTRS, read_container, write_container
    from collagekit.modality import DEFAULT_MAX_ELEMENTS
    from collagekit.registry import get_registry
    from collagekit.timing import median_time
    from collagekit_audio.acodec import AudioCollageCodec, decode_latents, read_code
    from collagekit_audio.audioio import AUDIO
    from collagekit_audio.compress import read_back, waveform_quality

    registry = get_registry()
    codec = AudioCollageCodec()
    x = AUDIO.load(path, DEFAULT_MAX_ELEMENTS)
    attrs = AUDIO.read_attributes(path)
    seconds = x.shape[-1] / attrs["sample_rate"]
    rows = []
    for model in models:
        options = {"model": model}
        warm = codec.encode(x[..., :4096], registry, quality=None, device=ctx.device, options=options)
        codec.decode(warm, registry, scale=1, device=ctx.device, options=options)
        encoded = median_time(lambda options=options: codec.encode(x, registry, quality=None, device=ctx.device, options=options), repeats, ctx.device)
        container = encoded.result
        container.header[SIGNAL_ATTRS] = attrs
        code = folder / f"{Path(model).stem}.clg"
        size = write_container(code, container)

        def decode(code=code, model=model) -> torch.Tensor:
            loaded, q, info = read_code(read_container(code), model)
            return decode_latents(loaded.model, q, info["channels"], info["samples"], 1, ctx.device, **info["solver"])

        decoded = median_time(decode, repeats, ctx.device)
        out = folder / f"{Path(model).stem}.wav"
        AUDIO.save(((decoded.result + 1) / 2).clamp(0, 1).cpu(), out, **attrs, scale=1)
        rows.append({
            "model": Path(model).stem,
            "bytes": size,
            "kbit_per_s": round(size * 8 / seconds / 1000, 3),
            "payload_kbit_per_s": round(container.tensors["streams"].numel() * 8 / seconds / 1000, 3),
            "compression_factor": round(x.shape[1] * x.shape[-1] * 2 / size, 2),
            **waveform_quality(x, read_back(out), attrs["sample_rate"]),
            "encode_x_realtime": round(seconds / encoded.seconds, 1),
            "decode_x_realtime": round(seconds / decoded.seconds, 1),
        })
    return rows


def _at_target(clip: dict[str, Any], kind: str) -> dict[str, Any]:
    """The clip's target rate (speech: 16 kbit/s; music and other: a tenth of its 16-bit PCM) and our
    SNR / PSNR there: interpolated, or our best point under that rate when the target is above our curve."""
    pcm_kbit = clip["sample_rate"] * clip["channels"] * 16 / 1000
    target = SPEECH_TARGET["kbit_per_s"] if kind == "speech" else pcm_kbit / MUSIC_TARGET["compression_factor"]
    out: dict[str, Any] = {"target_kbit_per_s": round(target, 3)}
    for measure in ("snr_db", "psnr_db"):
        curve = [(r["kbit_per_s"], r[measure]) for r in clip["collage"]]
        value = at_rate(curve, target)
        if value is None:
            under = [q for r, q in curve if r <= target]
            value = max(under) if under else None
        out[f"{measure}_at_target_rate"] = None if value is None else round(value, 3)
    goal = SPEECH_TARGET["psnr_db"] if kind == "speech" else MUSIC_TARGET["psnr_db"]
    out["target_met"] = out["psnr_db_at_target_rate"] is not None and out["psnr_db_at_target_rate"] >= goal
    return out


def _mean(values: list[float | None]) -> tuple[float | None, int]:
    """Mean over the values measured, and how many there were."""
    there = [v for v in values if v is not None]
    return (round(sum(there) / len(there), 3) if there else None), len(there)


def kind_means(clips: dict[str, dict[str, Any]], models: list[str]) -> list[dict[str, Any]]:
    """Per (kind, trained on or not) and model: the mean rate and quality over those clips, and against
    each baseline the mean difference (ours minus the baseline at our rate) over the clips where the
    baseline's curve brackets our rate, with their count: both sides always on the same clips."""
    groups: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for clip in clips.values():
        groups.setdefault((clip["kind"], clip["trained_on"]), []).append(clip)
    rows = []
    for (kind, trained), members in sorted(groups.items()):
        for model in models:
            ours = [next(r for r in c["collage"] if r["model"] == Path(model).stem) for c in members]
            row: dict[str, Any] = {"kind": kind, "trained_on": trained, "model": Path(model).stem, "clips": len(members)}
            for key in ("kbit_per_s", *MEASURES):
                row[key] = _mean([r[key] for r in ours])[0]
            for name in baselines_here():
                for measure in MEASURES:
                    diffs = [None if r[f"{name}_{measure}_at_rate"] is None else r[measure] - r[f"{name}_{measure}_at_rate"] for r in ours]
                    row[f"minus_{name}_{measure}"], row[f"{name}_clips"] = _mean(diffs)
            rows.append(row)
    return rows


def run(ctx: BenchContext) -> dict[str, Any]:
    import soundfile as sf

    from collagekit_audio.pretrained import STORE
    from collagekit_audio.splits import kind_of

    models = (ctx.option("models") or ",".join(f"{STORE.prefix}{q}" for q in STORE.qualities())).split(",")
    if models == [""]:
        raise CollagekitError("no Neural Collage audio model is installed; pass models=PATH,...")
    which = ctx.option("clips")
    paths = select_clips(ctx.data, which)
    seen = trained_on(models)
    results: dict[str, Any] = {"clip_set": which, "models": [Path(m).stem for m in models], "baselines": list(baselines_here()), "clips": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for path in paths:
            info = sf.info(str(path))
            samples, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (n c)
            seconds = samples.shape[0] / rate
            ours = _collage_points(path, ctx, models, ctx.option("repeats"), folder)
            baselines = _baseline_points(samples, rate, seconds, folder)
            for row in ours:  # the baselines' quality at our rate, where their curve brackets it
                for name, points in baselines.items():
                    for measure in MEASURES:
                        value = at_rate([(p["kbit_per_s"], p[measure]) for p in points], row["kbit_per_s"])
                        row[f"{name}_{measure}_at_rate"] = None if value is None else round(value, 3)
            clip = {"kind": kind_of(path.stem), "trained_on": path.stem in seen, "sample_rate": rate, "channels": info.channels,
                    "seconds": round(seconds, 3), "collage": ours, **baselines}  # fmt: skip
            clip.update(_at_target(clip, clip["kind"]))
            results["clips"][path.stem] = clip
            summary = ", ".join(f"{r['model']} {r['kbit_per_s']:.1f} kbit/s {r['snr_db']:.2f} dB SNR" for r in ours)
            print(f"{path.stem}: {summary}")
    results["means"] = kind_means(results["clips"], models)
    held = {stem: c for stem, c in results["clips"].items() if not c["trained_on"]}
    speed = min(r["encode_x_realtime"] for c in results["clips"].values() for r in c["collage"])
    results["targets"] = {
        **{f"{kind}_met": f"{sum(c['target_met'] for c in held.values() if c['kind'] == kind)} of {sum(c['kind'] == kind for c in held.values())}"
           for kind in ("speech", "music")},  # fmt: skip
        "slowest_encode_x_realtime": speed,
        "speed_met": speed >= SPEED_TARGET,
    }
    md, js = write_results(ctx, "audio" if which == "test" else f"audio_{which}", _markdown(results), results)
    return {**results["targets"], "markdown": str(md), "json": str(js)}


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def _markdown(results: dict[str, Any]) -> str:
    names = results["baselines"]
    missing = [n for n in BASELINES if n not in names]
    at = " | ".join(f"{n} SNR / PSNR / mel at rate" for n in names)
    minus = " | ".join(f"ours − {n}: SNR (= PSNR) / mel dB" for n in names)
    lines = [
        f"# Audio: Neural Collage codec vs {', '.join(names)} ({results['clip_set']} clips)",
        "",
        f"`collagekit bench audio clips={results['clip_set']}` (splits: `collagekit_audio/splits.py`). Rates from file bytes;",
        "SNR = signal power / error power; PSNR = 20 log10(2 / rmse) on the waveform in [-1, 1] (peak-to-peak 2, COIN++'s",
        "convention: it reads high on any quiet clip, SNR does not), both on the decoded 16-bit file read back. mel LSD:",
        "log-spectral distance between the 64-band mel power spectrograms (32 ms windows, floored 80 dB under the loudest",
        "band), RMS over frames and bands, lower is better. Baselines through soundfile (libsndfile): MP3 (LAME, average",
        "bitrate), Ogg Vorbis and Ogg Opus (music at 44.1 kHz through 48 kHz, torchaudio's resampler both ways) at the",
        "compression levels listed; their figures at our rate are interpolated in log-rate (– = not bracketed).",
        *([f"Not measured: {', '.join(missing)} (this libsndfile does not write it)."] if missing else []),
        "Times are medians after a warm-up. Trained on: whether the models benchmarked trained on the clip.",
        "",
        "## Targets (clips not trained on)",
        "",
        "| target | clips that meet it | |",
        "|---|---|---|",
        f"| speech: PSNR ≥ 40 dB at ≤ 16 kbit/s | {results['targets']['speech_met']} | per clip below |",
        f"| music: PSNR ≥ 39 dB at compression factor ≥ 10 | {results['targets']['music_met']} | per clip below |",
        f"| encode ≥ 100x real time | {_fmt(results['targets']['slowest_encode_x_realtime'])}x (slowest) | {'met' if results['targets']['speed_met'] else 'missed'} |",
        "",
        "| clip | kind | target rate kbit/s | SNR dB there | PSNR dB there | PSNR target |",
        "|---|---|---|---|---|---|",
        *(f"| {stem} | {c['kind']} | {_fmt(c['target_kbit_per_s'])} | {_fmt(c['snr_db_at_target_rate'])} | {_fmt(c['psnr_db_at_target_rate'])} | "
          f"{'met' if c['target_met'] else 'missed'} |" for stem, c in results["clips"].items() if not c["trained_on"]),
        "",
        "At the target rate: interpolated on our curve, or our best point under it when the target lies above our rates.",
        "",
        "## Means by kind",
        "",
        f"| kind | trained on | clips | model | kbit/s | SNR dB | PSNR dB | mel LSD dB | {minus} |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(names),
    ]
    for m in results["means"]:
        base = " | ".join(
            f"{_fmt(m[f'minus_{n}_snr_db'])} / {_fmt(m[f'minus_{n}_mel_distance_db'])} ({m[f'{n}_clips']} of {m['clips']})"
            for n in names
        )
        lines.append(f"| {m['kind']} | {'yes' if m['trained_on'] else 'no'} | {m['clips']} | {m['model']} | {_fmt(m['kbit_per_s'])} | {_fmt(m['snr_db'])} | "
                     f"{_fmt(m['psnr_db'])} | {_fmt(m['mel_distance_db'])} | {base} |")  # fmt: skip
    lines += ["", "ours − baseline: our figure minus the baseline's at our rate, averaged over the n of the m clips where the baseline's",
              "curve brackets our rate (– where none does). SNR: > 0 favours ours (on one clip a difference in SNR is the same",
              "difference in PSNR: both divide by the same error power); mel LSD: < 0 favours ours."]
    for stem, clip in results["clips"].items():
        lines += [
            "",
            f"## {stem} ({clip['kind']}, {clip['sample_rate']} Hz, {clip['channels']} ch, {clip['seconds']} s; trained on: {'yes' if clip['trained_on'] else 'no'})",
            "",
            f"Target rate {_fmt(clip['target_kbit_per_s'])} kbit/s: SNR {_fmt(clip['snr_db_at_target_rate'])} dB, PSNR {_fmt(clip['psnr_db_at_target_rate'])} dB "
            f"({'met' if clip['target_met'] else 'missed'}).",
            "",
            f"| codec | kbit/s (payload) | factor vs PCM16 | SNR dB | PSNR dB | mel LSD dB | {at} | encode x RT | decode x RT |",
            "|---|---|---|---|---|---|" + "---|" * len(names) + "---|---|",
        ]
        for r in clip["collage"]:
            base = " | ".join(f"{_fmt(r[f'{n}_snr_db_at_rate'])} / {_fmt(r[f'{n}_psnr_db_at_rate'])} / {_fmt(r[f'{n}_mel_distance_db_at_rate'])}" for n in names)
            lines.append(
                f"| {r['model']} | {_fmt(r['kbit_per_s'])} ({_fmt(r['payload_kbit_per_s'])}) | {_fmt(r['compression_factor'])} | {_fmt(r['snr_db'])} | {_fmt(r['psnr_db'])} "
                f"| {_fmt(r['mel_distance_db'])} | {base} | {_fmt(r['encode_x_realtime'])} | {_fmt(r['decode_x_realtime'])} |"
            )
        blank = " |" * len(names)
        for name in names:
            for p in clip[name]:
                lines.append(f"| {name} level {p['level']} | {_fmt(p['kbit_per_s'])} | | {_fmt(p['snr_db'])} | {_fmt(p['psnr_db'])} | {_fmt(p['mel_distance_db'])} |{blank} | |")
    return "\n".join(lines) + "\n"
