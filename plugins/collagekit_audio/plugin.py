"""Entry module of the audio plugin: hook implementations only; heavy imports stay inside the hooks."""

from __future__ import annotations

from collagekit.hookspecs import Register, hookimpl


@hookimpl
def register_partitioners(register: Register) -> None:
    from collagekit_audio.components import Segments

    register(Segments)


@hookimpl
def register_auxiliaries(register: Register) -> None:
    from collagekit_audio.components import SignTime

    register(SignTime)


@hookimpl
def register_modalities(register: Register) -> None:
    from collagekit_audio.audioio import AUDIO

    register(AUDIO)


@hookimpl
def register_tasks(register: Register) -> None:
    from collagekit_audio.tasks import AudioFractalize

    register(AudioFractalize)
