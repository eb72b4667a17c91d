"""Spectral quality of decoded audio: the log-mel spectral distance, through torchaudio's MelSpectrogram.

PSNR and SNR weigh every sample's error alike; a codec that smears the high band or leaves pre-echo can
score well on them and still sound wrong. The mel log-spectral distance (LSD) compares the two signals'
power on a perceptual frequency scale instead:

    LSD = sqrt(mean over frames and mel bands of (10 log10 P_ref - 10 log10 P_dec)^2)   in dB,

with both spectra floored at ``FLOOR_DB`` below the reference's loudest band, so near-silent frames
(whose log power is noise) do not dominate. 0 dB is identical; lower is better.

Shapes: ``c`` channels, ``n`` samples, ``m`` mel bands, ``f`` frames.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

FRAME_SECONDS = 0.032  # analysis window, the nearest power of two: 512 samples at 16 kHz, 1024 at 44.1 kHz
MEL_BANDS = 64
FLOOR_DB = 80.0
MIN_WINDOW = 16  # clips shorter than this have no meaningful spectrum: the distance is not measured


def _window(samples: int, sample_rate: int) -> int:
    """The FFT size: ``FRAME_SECONDS`` as a power of two, but never longer than the clip (the frames are
    centred with reflection padding, which needs half a window of signal on either side)."""
    wanted = 1 << max(4, round(math.log2(FRAME_SECONDS * sample_rate)))
    return min(wanted, 1 << int(math.log2(samples)))


def mel_spectrogram(wave: Tensor, sample_rate: int) -> Tensor:
    """(c n) waveform, n >= ``MIN_WINDOW`` -> (c m f) mel power spectrogram (Hann window, hop a quarter of it).

    Short windows get fewer bands (one per 8 FFT bins at most), so no mel filter falls between bins."""
    import torchaudio

    n_fft = _window(wave.shape[-1], sample_rate)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=min(MEL_BANDS, n_fft // 8), power=2.0, f_max=sample_rate / 2
    )
    return mel(wave.float()).double()


def mel_distance_db(reference: Tensor, decoded: Tensor, sample_rate: int) -> float | None:
    """Mel log-spectral distance in dB between two (c n) waveforms of the same shape, in [-1, 1]; None
    for clips shorter than ``MIN_WINDOW`` samples."""
    if reference.shape != decoded.shape:
        raise ValueError(f"shapes differ: {tuple(reference.shape)} vs {tuple(decoded.shape)}")
    if reference.shape[-1] < MIN_WINDOW:
        return None
    p_ref, p_dec = mel_spectrogram(reference, sample_rate), mel_spectrogram(decoded, sample_rate)
    floor = p_ref.amax().clamp(min=1e-20) * 10 ** (-FLOOR_DB / 10)
    diff = 10 * torch.log10(p_ref.clamp(min=floor)) - 10 * torch.log10(p_dec.clamp(min=floor))
    return float(diff.pow(2).mean().sqrt())
