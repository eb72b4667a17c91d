"""Entry module of the audio plugin: hook implementations only; heavy imports stay inside the hooks."""

from __future__ import annotations

from collagekit.hookspecs import Register, hookimpl


@hookimpl
def register_partitioners(register: Register) -> None:
    from collagekit_audio.components import Segments

    register(Segments)


@hookimpl
def register_auxiliaries(register: Register) -> None:
    from collagekit_audio.components import SignTime, TimeReversal

    register(SignTime)
    register(TimeReversal)


@hookimpl
def register_modalities(register: Register) -> None:
    from collagekit_audio.audioio import AUDIO

    register(AUDIO)


@hookimpl
def register_tasks(register: Register) -> None:
    from collagekit_audio.compress import AudioCompress
    from collagekit_audio.tasks import AudioFractalize
    from collagekit_audio.train import AudioTrain

    register(AudioFractalize)
    register(AudioTrain)
    register(AudioCompress)


@hookimpl
def register_codecs(register: Register) -> None:
    from collagekit_audio.acodec import AudioCollageCodec

    register(AudioCollageCodec())


@hookimpl
def register_benchmarks(register: Register) -> None:
    from collagekit_audio.bench import AUDIO_BENCH
    from collagekit_audio.fractalize_bench import AUDIO_FRACTALIZE_BENCH

    register(AUDIO_BENCH)
    register(AUDIO_FRACTALIZE_BENCH)
