"""Audio files through soundfile: (1 c n) float32 tensors in [0, 1], c = 1 (mono) or 2 (stereo).

The waveform x in [-1, 1] is stored as (x + 1) / 2, so audio shares the grid modalities' [0, 1]
convention: the same operator, PSNR and quantisers apply. PSNR on the waveform then means peak =
the full range [-1, 1] (an amplitude-2 peak), the convention COIN++ reports for audio.

The sample rate is an *attribute* of the signal (``sample_rate``): codecs carry it in the .clg header
and :func:`save_audio` writes ``sample_rate * scale`` — decoding at scale s is decoding at s x the rate.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from collagekit.errors import CollagekitError
from collagekit.fileio import atomic_output, native_output
from collagekit_audio.config import AUDIO, SUFFIXES

__all__ = ["AUDIO", "SUFFIXES", "audio_attributes", "audio_from_memory", "audio_to_memory", "load_audio", "save_audio"]
# What each suffix is written as: 16-bit PCM where lossless, the codec's own format otherwise.
WRITE_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}
MAX_SAMPLE_RATE = 768_000
CLIP_LEVEL = 0.999  # |x| at or above this counts as clipped
CLIP_WARN_FRACTION = 0.001  # warn when more than 0.1 % of samples are clipped


def _info(path: Path) -> Any:
    """soundfile's description of the file, its sample rate checked: a rate no decoder can write back
    (above :data:`MAX_SAMPLE_RATE`) is refused before anything is coded."""
    import soundfile as sf

    try:
        with native_output() as chatter:  # libsndfile's decoders (libmpg123) print their own warnings
            info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise CollagekitError(f"{path} is not an audio file soundfile can read ({_one_line(exc, chatter)})") from None
    if not 1 <= info.samplerate <= MAX_SAMPLE_RATE:
        raise CollagekitError(f"{path} has a sample rate of {info.samplerate:,} Hz; collagekit reads 1 to {MAX_SAMPLE_RATE:,} Hz")
    return info


def _one_line(exc: BaseException, chatter: list[str]) -> str:
    """An exception's first line, with the library's own first message when it printed one."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{text}; {chatter[0]}" if chatter else text


def audio_attributes(path: Path) -> dict[str, Any]:
    """What a decoder must know beside the samples: the sample rate."""
    return {"sample_rate": int(_info(path).samplerate)}


def load_audio(path: Path, max_elements: int) -> Tensor:
    """Mono or stereo audio -> (1 c n) in [0, 1]; refuses empty, silent and over-large files."""
    import soundfile as sf

    info = _info(path)
    if info.channels not in (1, 2):
        raise CollagekitError(f"{path} has {info.channels} channels; collagekit reads mono or stereo audio")
    if info.frames <= 0:
        raise CollagekitError(f"{path} holds no samples")
    if info.frames * info.channels > max_elements:
        raise CollagekitError(
            f"{path} has {info.frames:,} x {info.channels} samples, above the limit of {max_elements:,}"
        )
    try:
        with native_output() as chatter:
            samples, _ = sf.read(str(path), dtype="float32", always_2d=True)  # (n c)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise CollagekitError(f"{path} could not be decoded as audio ({_one_line(exc, chatter)})") from None
    if not np.isfinite(samples).all():
        raise CollagekitError(f"{path} holds NaN or infinite samples")
    if samples.size == 0:
        raise CollagekitError(f"{path} holds no samples")
    if float(samples.max() - samples.min()) == 0.0:
        raise CollagekitError(f"{path} is silent (every sample is {float(samples.flat[0]):g}): there is nothing to represent")
    clipped = float(np.mean(np.abs(samples) >= CLIP_LEVEL))
    if clipped > CLIP_WARN_FRACTION:
        warnings.warn(f"{path}: {100 * clipped:.1f} % of the samples are clipped; the code reproduces the clipping", stacklevel=2)
    z = (torch.from_numpy(np.clip(samples, -1.0, 1.0)).T + 1.0) / 2.0
    return z[None].contiguous()


def save_audio(z: Tensor, path: Path, *, sample_rate: Any = None, scale: int = 1, target_rate: int | None = None, **_: Any) -> None:
    """(1 c n) in [0, 1] -> a file whose format follows the suffix, at ``sample_rate * scale`` Hz, or
    resampled from there to ``target_rate`` (torchaudio's band-limited sinc resampler) when given."""
    import soundfile as sf

    if not isinstance(sample_rate, int) or not 1 <= sample_rate <= MAX_SAMPLE_RATE:
        raise CollagekitError(f"the code carries no valid sample rate (got {sample_rate!r}); it cannot be written as audio")
    suffix = Path(path).suffix.lower()
    if suffix not in WRITE_FORMATS:
        raise CollagekitError(f"cannot write audio as {suffix!r}; use one of {', '.join(WRITE_FORMATS)}")
    file_format, subtype = WRITE_FORMATS[suffix]
    rate = int(sample_rate) * int(scale)
    if target_rate is not None and target_rate != rate:
        if not 1 <= target_rate <= MAX_SAMPLE_RATE:
            raise CollagekitError(f"cannot write audio at {target_rate} Hz (1 to {MAX_SAMPLE_RATE} Hz)")
        from torchaudio.functional import resample

        # On the zero-centred waveform: the filter pads with zeros, and the [0, 1] storage's offset of 1/2
        # would ring at both ends.
        wave = z.detach().float().cpu() * 2.0 - 1.0
        z, rate = (resample(wave, rate, int(target_rate)) + 1.0) / 2.0, int(target_rate)
    samples = (z[0].detach().float().cpu().clamp(0.0, 1.0) * 2.0 - 1.0).T.contiguous().numpy()  # (n c)
    with atomic_output(path) as tmp:
        try:
            sf.write(str(tmp), samples, rate, format=file_format, subtype=subtype)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise CollagekitError(f"cannot write {path} at {rate} Hz as {file_format}/{subtype}: {exc}") from None



def audio_from_memory(data: Any, attrs: dict[str, Any]) -> Tensor:
    """A waveform in memory, in [-1, 1] -> (1 c n) in [0, 1]: a numpy array (n,) or (n c) as soundfile
    gives it, or a torch tensor (c n) as torchaudio gives it; ``attrs`` must hold its ``sample_rate``."""
    rate = attrs.get("sample_rate")
    if set(attrs) != {"sample_rate"} or not isinstance(rate, int) or not 1 <= rate <= MAX_SAMPLE_RATE:
        raise CollagekitError(f"audio in memory needs its sample_rate (an integer, 1 to {MAX_SAMPLE_RATE} Hz), and nothing else; got {attrs}")
    if isinstance(data, np.ndarray):
        wave = torch.from_numpy(np.asarray(data, dtype=np.float32))
        wave = wave[None] if wave.ndim == 1 else wave.T  # soundfile: (n c)
    elif isinstance(data, Tensor):
        wave = data.detach().float().cpu()
        wave = wave[None] if wave.ndim == 1 else wave  # torchaudio: (c n)
    else:
        raise CollagekitError(f"cannot read audio from a {type(data).__name__}; give a path, a numpy array or a tensor")
    if wave.ndim != 2 or wave.shape[0] not in (1, 2) or wave.shape[1] < 1:
        raise CollagekitError(f"audio in memory must be mono or stereo: numpy (n,) or (n c), tensor (c n); got shape {tuple(data.shape)}")
    if not torch.isfinite(wave).all():
        raise CollagekitError("the waveform holds NaN or infinite samples")
    return ((wave.clamp(-1.0, 1.0) + 1.0) / 2.0)[None].contiguous()


def audio_to_memory(z: Tensor) -> Tensor:
    """(1 c n) in [0, 1] -> the waveform (c n) in [-1, 1], torchaudio's layout."""
    return z[0] * 2.0 - 1.0
