"""``task: audio_compress``: compress a clip with a Neural Collage audio model, save the .clg, decode
the saved file, write it as 16-bit audio and report kbit/s, SNR, PSNR and timings on what was stored.

Measurement (DESIGN section 4): the rate is the .clg file's bytes x 8 / duration; SNR and PSNR compare
the input's samples with the written output read back (16-bit PCM), on the waveform in [-1, 1], PSNR
with peak-to-peak range 2 (:func:`collagekit.metrics.psnr_float`); the mel log-spectral distance
(:mod:`collagekit_audio.features`) compares their spectra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from collagekit.container import SIGNAL_ATTRS, from_bytes, to_bytes
from collagekit.fileio import outputs_together
from collagekit.metrics import psnr_float, snr, write_metrics
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.tasks import Task
from collagekit.timing import median_time
from collagekit_audio.config import AudioCompressConfig
from collagekit_audio.features import mel_distance_db

PCM_SUFFIXES = (".wav", ".flac")


def waveform_quality(reference: torch.Tensor, decoded: torch.Tensor, sample_rate: int) -> dict[str, float | None]:
    """(1 c n) and (1 c n) in the modality's [0, 1] coding -> SNR, PSNR and mel log-spectral distance
    (dB; None for clips of a few samples) of the [-1, 1] waveforms."""
    a, b = reference * 2.0 - 1.0, decoded * 2.0 - 1.0
    mel = mel_distance_db(a[0], b[0], sample_rate)
    return {
        "snr_db": round(snr(a, b), 3),
        "psnr_db": round(psnr_float(a, b, peak=2.0), 3),
        "mel_distance_db": None if mel is None else round(mel, 3),
    }


def as_16bit(z: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(1 c n) in [0, 1] -> the same after a round trip through 16-bit PCM (libsndfile's conversion, in
    memory): what a written .wav or .flac holds."""
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, (z[0].detach().float().cpu().clamp(0.0, 1.0) * 2.0 - 1.0).T.numpy(), sample_rate, format="WAV", subtype="PCM_16")
    buffer.seek(0)
    samples, _ = sf.read(buffer, dtype="float32", always_2d=True)  # (n c)
    return ((torch.from_numpy(samples).T + 1.0) / 2.0)[None]


def read_back(path: Path) -> torch.Tensor:
    """A decoded file as stored -> (1 c n) in [0, 1]. Unlike the modality's loader it accepts silence:
    a codec may well decode to it."""
    import soundfile as sf

    samples, _ = sf.read(str(path), dtype="float32", always_2d=True)  # (n c)
    return ((torch.from_numpy(samples).T + 1.0) / 2.0)[None]


class AudioCompress(Task):
    Config = AudioCompressConfig

    config: Config

    def run(self) -> dict[str, Any]:
        from collagekit_audio.acodec import AudioCollageCodec, decode_latents, read_code
        from collagekit_audio.audioio import AUDIO
        from collagekit_audio.tasks import sample_audio

        cfg, device, registry = self.config, self.ctx.device, self.ctx.registry
        source, output, code_path = cfg.paths(PCM_SUFFIXES, sample_audio, self.ctx)
        x = AUDIO.load(source, DEFAULT_MAX_ELEMENTS)
        attrs = AUDIO.read_attributes(source)
        options = {"model": cfg.model} if cfg.model else {}
        codec = AudioCollageCodec()
        # Untimed warm-up of both directions: first calls pay one-time costs (model load, allocator).
        warm = codec.encode(x[..., : min(x.shape[-1], 4096)], registry, quality=cfg.quality, device=device, options=options)
        codec.decode(warm, registry, scale=1, device=device, options=options)
        encoded = median_time(lambda: codec.encode(x, registry, quality=cfg.quality, device=device, options=options), cfg.repeats, device)
        container = encoded.result
        container.header[SIGNAL_ATTRS] = attrs
        code = to_bytes(container)
        size = len(code)

        def decode() -> tuple[Any, torch.Tensor, torch.Tensor]:  # the whole decode of the code file: entropy decoding + solve
            loaded, q, info = read_code(from_bytes(code, str(code_path)), cfg.model)
            return loaded, q, decode_latents(loaded.model, q, info["channels"], info["samples"], 1, device, **info["solver"])

        decoded = median_time(decode, cfg.repeats, device)
        loaded, q, wave = decoded.result
        seconds = x.shape[-1] / attrs["sample_rate"]
        encode_s, decode_s = encoded.seconds, decoded.seconds
        bound = float(loaded.model.collage.lipschitz_bound(loaded.model.params(q.float())).max())
        with outputs_together() as stage:
            staged = stage(output)
            AUDIO.save(((wave + 1.0) / 2.0).clamp(0.0, 1.0).cpu(), staged, **attrs, scale=1)
            stored = read_back(staged)  # quality as stored: the 16-bit file
            metrics = {
                "input": str(source),
                "output": str(output),
                "code": str(code_path),
                "model": loaded.name,
                "code_bytes": size,
                "sample_rate": attrs["sample_rate"],
                "channels": int(x.shape[1]),
                "seconds": round(seconds, 3),
                "kbit_per_s": round(size * 8 / seconds / 1000, 3),
                "payload_kbit_per_s": round(container.tensors["streams"].numel() * 8 / seconds / 1000, 3),
                "compression_factor": round(x.shape[1] * x.shape[-1] * 2 / size, 2),  # vs 16-bit PCM
                **waveform_quality(x, stored, attrs["sample_rate"]),
                "lipschitz_bound": round(bound, 4),
                "encode_seconds": round(encode_s, 4),
                "decode_seconds": round(decode_s, 4),
                "encode_x_realtime": round(seconds / encode_s, 1),
                "decode_x_realtime": round(seconds / decode_s, 1),
                **self.ctx.conditions(),
            }
            stage(code_path).write_bytes(code)
            if cfg.metrics:
                write_metrics(stage(cfg.metrics), metrics)
        return metrics
