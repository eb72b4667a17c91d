"""What the audio plugin declares before anything runs: its components' and tasks' Configs, the
codec's options, the audio modality and the benchmark. Imports no torch (see :mod:`collagekit.lazy`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from collagekit.bench import Benchmark
from collagekit.config import CollageConfig, ComponentConfig, GridConfig, Options, Slot, StrictModel, TrainingConfig, slot_default
from collagekit.lazy import Lazy
from collagekit.modality import Modality
from collagekit.tasks import CodecTrainConfig, FileTaskConfig, GridFractalizeConfig

SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")

AUDIO = Modality(
    name="audio",
    suffixes=SUFFIXES,
    load=Lazy("collagekit_audio.audioio:load_audio"),
    save=Lazy("collagekit_audio.audioio:save_audio"),
    attributes=Lazy("collagekit_audio.audioio:audio_attributes"),
    from_memory=Lazy("collagekit_audio.audioio:audio_from_memory"),
    to_memory=Lazy("collagekit_audio.audioio:audio_to_memory"),
    fractalize_task="audio_fractalize",
    default_codec="audio-collage",
    description="mono or stereo audio (WAV, FLAC, OGG, MP3) through soundfile",
)


# ---------------------------------------------------------------- components
class SegmentsConfig(GridConfig):
    name: Literal["segments1d"] = "segments1d"


class SignTimeConfig(ComponentConfig):
    name: Literal["sign-time"] = "sign-time"


class ReverseConfig(ComponentConfig):
    name: Literal["reverse"] = "reverse"


# ---------------------------------------------------------------- the Neural Collage audio model and codec
class AudioModelConfig(StrictModel):
    """Architecture of a Neural Collage audio codec (stored in its weights file's metadata)."""

    segment: int = Field(256, ge=16, le=8192, description="segment length in samples: each segment is one collage signal")
    range_size: int = Field(16, ge=2, le=256, description="range cell length (even, dividing the segment)")
    domain_size: int = Field(32, ge=2, le=8192, description="domain cell length inside the segment")
    domain_stride: int = Field(32, ge=1, le=8192, description="step between domain cells")
    sign_time: bool = Field(False, description="add every domain negated, reversed and both as sources")
    patches: int = Field(16, ge=1, le=256, description="dataset-level learned patches (auxiliary domains)")
    width: int = Field(64, ge=8, le=512, description="encoder feature channels")
    contraction: float = Field(0.9, gt=0, lt=1, description="rho: bound on the collage map's Lipschitz constant")
    max_symbol: int = Field(255, ge=1, le=2047, description="codes are clamped to [-max_symbol, max_symbol]")


class AudioCollageOptions(Options):
    model: str | None = Field(None, description="a shipped model's name or a .safetensors path (encoding default: ac-q<quality>; decoding: the model the code names)")


# ---------------------------------------------------------------- tasks
class AudioFractalizeConfig(GridFractalizeConfig):
    task: Literal["audio_fractalize"] = "audio_fractalize"
    output: str = Field("fractal.wav", description="decoded attractor (at scale x the input's sample rate)")
    scale: int = Field(1, ge=1, le=16, description="decode at this integer multiple of the input's sample rate")
    collage: CollageConfig = Field(
        default_factory=lambda: {
            "partitioner": {"name": "segments1d", "range_size": 256, "levels": 7, "domain_size": 512, "domain_stride": 128},
            "auxiliary": [{"name": "reverse"}],
            "mixing": "sparse",
            "sources": 1,
        },
        validate_default=True,
    )
    encoder: Annotated[ComponentConfig, Slot("encoder")] = slot_default("search", range_samples=13, steps=100, lr=0.003)


class AudioTrainConfig(CodecTrainConfig):
    task: Literal["audio_train"] = "audio_train"
    data: str | None = Field(None, description="folder of speech_*/music_* clips (default: $COLLAGEKIT_DATA/audio); the split's test and validation clips (collagekit_audio.splits) are skipped")
    out_dir: str = Field("outputs/audio_train", description="checkpoints, the training log and (by default) the exported model")
    lmbda: float = Field(2000.0, gt=0, description="weight of the waveform MSE: higher = more bits, better quality")
    spectral: float = Field(0.05, ge=0, description="weight of the multi-resolution STFT loss")
    speech_fraction: float = Field(0.7, ge=0, le=1, description="share of training crops drawn from speech clips")
    crop: int = Field(2048, ge=1024, le=1 << 20, description="training crop length in samples (a multiple of the segment; at least the largest STFT size, 1024)")
    max_iter: int = Field(30, ge=1, le=1000, description="fixed-point iterations while training")
    model: AudioModelConfig = Field(default_factory=AudioModelConfig)
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig(steps=4000, batch_size=8, lr=2e-3, warmup_steps=50, log_every=50, checkpoint_every=250))


class AudioCompressConfig(FileTaskConfig):
    task: Literal["audio_compress"] = "audio_compress"
    input: str | None = Field(None, description="clip to compress (default: the sample shipped with collagekit_audio)")
    output: str = Field("compressed.wav", description="the decoded clip, 16-bit PCM (.wav or .flac), measured as stored")
    quality: int | None = Field(None, ge=1, description="shipped model ac-q<quality> (default: the middle one)")
    model: str | None = Field(None, description="a shipped model's name or a .safetensors path; overrides quality")
    repeats: int = Field(3, ge=1, le=50, description="timed runs of encode and decode (the median is reported)")


# ---------------------------------------------------------------- benchmark
class AudioBenchOptions(Options):
    clips: Literal["test", "validation", "all"] = Field(
        "test", description="test: the split's test clips (collagekit_audio/splits.py); validation: its validation clips; all: every audio file in --data DIR"
    )
    models: str | None = Field(None, description="comma-separated model names or files (default: every shipped ac-q*)")
    repeats: int = Field(3, ge=1, description="timed runs per clip and model (the median is reported)")


class AudioFractalizeBenchOptions(Options):
    """Any other key=value is a field of the audio_fractalize task (e.g. encoder.steps=200)."""

    model_config = ConfigDict(extra="allow")
    clips: str = Field("test", description="test or validation (the split's clips, collagekit_audio/splits.py), or comma-separated clip names (file stems in the data folder)")
    sample: bool | None = Field(None, description="also the 1 s sample shipped with collagekit_audio (default: with clips=test only)")
    seconds: float | None = Field(None, gt=0, description="only the first S seconds of each clip (default: whole clips)")
    results: str | None = Field(None, pattern=r"^audio_fractalize[\w.-]*$", description="results file name (default: audio_fractalize)")


AUDIO_FRACTALIZE_BENCH = Benchmark(
    name="audio-fractalize",
    description="audio fractalization: code size vs 16-bit PCM, SNR/PSNR, mel distance, scale 2, fit time",
    run=Lazy("collagekit_audio.fractalize_bench:run"),
    default_data="audio",
    options=AudioFractalizeBenchOptions,
)


AUDIO_BENCH = Benchmark(
    name="audio",
    description="Neural Collage audio models vs MP3, Vorbis and Opus on the test (or validation, or all) clips: kbit/s, SNR, PSNR, mel LSD, speed",
    run=Lazy("collagekit_audio.bench:run"),
    default_data="audio",
    options=AudioBenchOptions,
)
