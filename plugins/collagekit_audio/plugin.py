"""Entry module of the audio plugin: hook implementations only. Everything is registered lazily with its
Config or declaration from :mod:`collagekit_audio.config`, so listing and validating import no torch."""

from __future__ import annotations

from collagekit.hookspecs import Register, hookimpl
from collagekit.lazy import Lazy


@hookimpl
def register_partitioners(register: Register) -> None:
    from collagekit_audio.config import SegmentsConfig

    register(Lazy("collagekit_audio.components:Segments", Config=SegmentsConfig))


@hookimpl
def register_auxiliaries(register: Register) -> None:
    from collagekit_audio.config import ReverseConfig, SignTimeConfig

    register(Lazy("collagekit_audio.components:SignTime", Config=SignTimeConfig))
    register(Lazy("collagekit_audio.components:TimeReversal", Config=ReverseConfig))


@hookimpl
def register_modalities(register: Register) -> None:
    from collagekit_audio.config import AUDIO

    register(AUDIO)


@hookimpl
def register_tasks(register: Register) -> None:
    from collagekit_audio.config import AudioCompressConfig, AudioFractalizeConfig, AudioTrainConfig

    register(Lazy("collagekit_audio.tasks:AudioFractalize", Config=AudioFractalizeConfig))
    register(Lazy("collagekit_audio.train:AudioTrain", Config=AudioTrainConfig))
    register(Lazy("collagekit_audio.compress:AudioCompress", Config=AudioCompressConfig))


@hookimpl
def register_codecs(register: Register) -> None:
    from collagekit_audio.config import AudioCollageOptions

    register(
        Lazy("collagekit_audio.acodec:AudioCollageCodec", name="audio-collage", encode_options=AudioCollageOptions, decode_options=AudioCollageOptions)
    )


@hookimpl
def register_benchmarks(register: Register) -> None:
    from collagekit_audio.config import AUDIO_BENCH, AUDIO_FRACTALIZE_BENCH

    register(AUDIO_BENCH)
    register(AUDIO_FRACTALIZE_BENCH)
