"""Entry module of the image plugin: hook implementations only; heavy imports stay inside the hooks."""

from __future__ import annotations

from collagekit.hookspecs import Register, hookimpl


@hookimpl
def register_partitioners(register: Register) -> None:
    from collagekit_image.components import ImageTiles

    register(ImageTiles)


@hookimpl
def register_auxiliaries(register: Register) -> None:
    from collagekit_image.components import Dihedral

    register(Dihedral)


@hookimpl
def register_modalities(register: Register) -> None:
    from collagekit_image.imageio import IMAGE

    register(IMAGE)


@hookimpl
def register_tasks(register: Register) -> None:
    from collagekit_image.compress import ImageCompress
    from collagekit_image.tasks import ImageFractalize
    from collagekit_image.train import ImageTrain

    register(ImageFractalize)
    register(ImageTrain)
    register(ImageCompress)


@hookimpl
def register_codecs(register: Register) -> None:
    from collagekit_image.ncodec import NeuralCollageCodec

    register(NeuralCollageCodec())


@hookimpl
def register_benchmarks(register: Register) -> None:
    from collagekit_image.bench import IMAGE_FIT
    from collagekit_image.kodak import KODAK_BENCH

    register(IMAGE_FIT)
    register(KODAK_BENCH)
