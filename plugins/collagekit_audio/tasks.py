"""Audio tasks. ``audio_fractalize``: the whole clip as the one domain plus its sign/time variants.

This is image fractalization (paper section 4.3) carried to 1D: every range segment is a scaled,
shrunken copy of the whole waveform (or its negation or reversal), so decoding at scale s — at s x
the sample rate — fills in self-similar detail. It is a representation, not a compressor.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from collagekit.config import CollageConfig
from collagekit.fractalize import GridFractalizeConfig, GridFractalizeTask

SAMPLE = "speech_1s.flac"


def sample_audio() -> Path:
    """One second of LibriSpeech speech (16 kHz mono), shipped so recipes run without the data folder."""
    return Path(str(files("collagekit_audio") / "samples" / SAMPLE))


class AudioFractalize(GridFractalizeTask):
    modality: ClassVar[str] = "audio"

    class Config(GridFractalizeConfig):
        task: Literal["audio_fractalize"] = "audio_fractalize"
        output: str = Field("fractal.wav", description="decoded attractor (at scale x the input's sample rate)")
        scale: int = Field(1, ge=1, le=16, description="decode at this integer multiple of the input's sample rate")
        collage: CollageConfig = Field(
            default_factory=lambda: {
                "partitioner": {"name": "segments1d", "range_size": 32, "domain_size": "full"},
                "auxiliary": [{"name": "sign-time"}],
            },
            validate_default=True,
        )

    def sample_path(self) -> Path:
        return sample_audio()
