"""Entry module of the image plugin: hook implementations only. Everything is registered lazily with its
Config or declaration from :mod:`collagekit_image.config`, so listing and validating import no torch."""

from __future__ import annotations

from collagekit.hookspecs import Register, hookimpl
from collagekit.lazy import Lazy


@hookimpl
def register_partitioners(register: Register) -> None:
    from collagekit_image.config import TilesConfig

    register(Lazy("collagekit_image.components:ImageTiles", Config=TilesConfig))


@hookimpl
def register_auxiliaries(register: Register) -> None:
    from collagekit_image.config import DihedralConfig

    register(Lazy("collagekit_image.components:Dihedral", Config=DihedralConfig))


@hookimpl
def register_modalities(register: Register) -> None:
    from collagekit_image.config import IMAGE

    register(IMAGE)


@hookimpl
def register_tasks(register: Register) -> None:
    from collagekit_image.config import (
        ImageCompressConfig,
        ImageFractalizeConfig,
        ImageTrainConfig,
        SparseCollagePriorTrainConfig,
        SparseCollageTrainConfig,
    )

    register(Lazy("collagekit_image.tasks:ImageFractalize", Config=ImageFractalizeConfig))
    register(Lazy("collagekit_image.train:ImageTrain", Config=ImageTrainConfig))
    register(Lazy("collagekit_image.shortlist_train:SparseCollageTrain", Config=SparseCollageTrainConfig))
    register(Lazy("collagekit_image.prior_train:SparseCollagePriorTrain", Config=SparseCollagePriorTrainConfig))
    register(Lazy("collagekit_image.compress:ImageCompress", Config=ImageCompressConfig))


@hookimpl
def register_codecs(register: Register) -> None:
    from collagekit_image.config import (
        NeuralCollageDecodeOptions,
        NeuralCollageEncodeOptions,
        SparseCollageDecodeOptions,
        SparseCollageEncodeOptions,
    )

    register(
        Lazy(
            "collagekit_image.ncodec:NeuralCollageCodec",
            name="neural-collage",
            encode_options=NeuralCollageEncodeOptions,
            decode_options=NeuralCollageDecodeOptions,
        )
    )
    register(
        Lazy(
            "collagekit_image.sparsecodec:SparseCollageCodec",
            name="sparse-collage",
            encode_options=SparseCollageEncodeOptions,
            decode_options=SparseCollageDecodeOptions,
        )
    )


@hookimpl
def register_benchmarks(register: Register) -> None:
    from collagekit_image.config import IMAGE_FIT, KODAK_BENCH, SPARSE_BENCH

    register(IMAGE_FIT)
    register(KODAK_BENCH)
    register(SPARSE_BENCH)
