"""Trained image models: shipped ones (``models/<name>.safetensors`` in this package: Neural Collage
models; ``models/shortlist/``: the sparse-collage search's shortlists; ``models/priors/``: its stream
priors, one set per rate point) and user-trained ones given by
path, through the core's :class:`collagekit.pretrained.ModelStore`."""

from __future__ import annotations

from collagekit.config import ShortlistConfig, StreamPriorsConfig
from collagekit.pretrained import ModelStore
from collagekit.prior import StreamPriors
from collagekit.shortlist import Shortlist
from collagekit_image.neural import ModelConfig, NeuralCollageModel

MODEL_FORMAT = "collagekit-image-model"
QUALITY_PREFIX = "nc-q"

STORE = ModelStore(
    package="collagekit_image",
    format=MODEL_FORMAT,
    prefix=QUALITY_PREFIX,
    config=ModelConfig,
    build=NeuralCollageModel,
    what="Neural Collage model",
)

SHORTLISTS = ModelStore(
    package="collagekit_image",
    format="collagekit-image-shortlist",
    prefix="shortlist",
    config=ShortlistConfig,
    build=Shortlist,
    what="search shortlist",
    subfolder="models/shortlist",
)

PRIORS = ModelStore(
    package="collagekit_image",
    format="collagekit-image-stream-priors",
    prefix="sc-l",
    config=StreamPriorsConfig,
    build=StreamPriors,
    what="set of stream priors",
    subfolder="models/priors",
    option="prior",
)
