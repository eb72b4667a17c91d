"""Trained Neural Collage audio models: shipped ones (``models/ac-q<N>.safetensors`` in this package),
retired ones (``models/retired/``: earlier weights of a shipped name, which the store finds by the hash
a file records, so the files they wrote still decode) and user-trained ones given by path, through the core's :class:`collagekit.pretrained.ModelStore`."""

from __future__ import annotations

from collagekit.pretrained import ModelStore
from collagekit_audio.neural import AudioCollageModel, AudioModelConfig

MODEL_FORMAT = "collagekit-audio-model"

STORE = ModelStore(
    package="collagekit_audio",
    format=MODEL_FORMAT,
    prefix="ac-q",
    config=AudioModelConfig,
    build=AudioCollageModel,
    what="Neural Collage audio model",
)

