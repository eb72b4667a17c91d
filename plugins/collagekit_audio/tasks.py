"""Audio tasks. ``audio_fractalize``: the whole clip as the one domain plus its sign/time variants.

This is image fractalization (paper section 4.3) carried to 1D: every range segment is a scaled,
shrunken copy of the whole waveform (or its negation or reversal), so decoding at scale s — at s x
the sample rate — fills in self-similar detail. It is a representation, not a compressor.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import ClassVar

from collagekit.grid_fractalize import GridFractalizeTask
from collagekit_audio.config import AudioFractalizeConfig

SAMPLE = "speech_1s.flac"


def sample_audio() -> Path:
    """One second of LibriSpeech speech (16 kHz mono), shipped so recipes run without the data folder."""
    return Path(str(files("collagekit_audio") / "samples" / SAMPLE))


class AudioFractalize(GridFractalizeTask):
    modality: ClassVar[str] = "audio"

    Config = AudioFractalizeConfig

    def sample_path(self) -> Path:
        return sample_audio()
