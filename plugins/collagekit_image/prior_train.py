"""``task: sparse_collage_prior_train``: train the sparse-collage codec's stream priors at one rate point
(:class:`collagekit.prior.StreamPriors`).

The examples are the streams the codec writes for training images at the recipe's ``lmbda``: each image
searched and cut exactly as ``compress`` does, its split flags, weight symbols (per level) and biases
(of flat and of named ranges apart) laid out as in a file coded with priors. The priors start from the
pooled frequencies and are trained through :func:`collagekit.training.train` on what the adaptive coder
spends (:class:`collagekit.prior.AdaptiveCodeLength`), a batch of images per step. The source indices
are left to the file's own models: where they point is close to uniform.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from collagekit.codec_training import CodecTrainTask, TrainingSetup
from collagekit.colour import rgb_to_ycbcr
from collagekit.config import StreamPriorsConfig
from collagekit.errors import CollagekitError
from collagekit.prior import AdaptiveCodeLength, AdaptiveExamples, StreamPriors
from collagekit_image.config import SparseCollagePriorTrainConfig
from collagekit_image.pretrained import PRIORS
from collagekit_image.shortlist_train import training_paths
from collagekit_image.sparsecodec import COLLAGE_KEYS, Layout, code_streams, fits, plane_groups, search_codes
from collagekit_image.train import training_rgb
from collagekit_image.validation import validation_names

MODELLED = ("s", "w", "b")  # stream kinds with a prior: split flags, weight symbols, biases (not source indices)


class CodedStreams:
    """The modelled streams of each training image: ``streams[name]`` one array per image (empty where
    the image has none). ``__call__(step, rank, world_size)`` gives ``batch`` images' streams as
    :class:`AdaptiveExamples`, deterministic in its arguments."""

    def __init__(self, paths: list[Path], config: SparseCollagePriorTrainConfig, batch: int, seed: int) -> None:
        opts = config.options
        layout = Layout(**{k: getattr(opts, k) for k in COLLAGE_KEYS})
        self.alphabets: dict[str, int] = {}
        per_image: list[dict[str, np.ndarray]] = []
        for path in paths:
            ycbcr = rgb_to_ycbcr(training_rgb(path))
            if not all(fits(tuple(planes.shape[2:]), layout.range_size) for _, planes, _ in plane_groups(ycbcr, opts.chroma)):
                continue
            codes, shapes, _ = search_codes(ycbcr, layout, opts, config.lmbda, contexts=True)
            streams, alphabets = code_streams(codes, layout, shapes, contexts=True)
            kept = {name: s.numpy() for name, s in streams.items() if name[1] in MODELLED}
            self.alphabets.update({name: alphabets[name] for name in kept})
            per_image.append(kept)
        if not per_image:
            raise CollagekitError("no training image is large enough for the codec's settings")
        self.streams = {name: [image.get(name, np.zeros(0, dtype=np.int64)) for image in per_image] for name in self.alphabets}
        self.images, self.batch, self.seed = len(per_image), batch, seed

    def counts(self) -> dict[str, torch.Tensor]:
        """Pooled symbol counts per stream, where the priors start."""
        return {name: torch.from_numpy(np.bincount(np.concatenate(arrays), minlength=self.alphabets[name])) for name, arrays in self.streams.items()}

    def symbols(self) -> int:
        return int(sum(a.size for arrays in self.streams.values() for a in arrays))

    def __call__(self, step: int, rank: int, world_size: int) -> dict[str, AdaptiveExamples]:
        rng = np.random.default_rng(((self.seed * 1_000_003 + step) * 1024 + rank) % (1 << 63))
        pick = rng.choice(self.images, size=min(self.batch, self.images), replace=False)
        return {name: AdaptiveExamples.of([arrays[i] for i in pick], self.alphabets[name]) for name, arrays in self.streams.items()}


class SparseCollagePriorTrain(CodecTrainTask):
    store = PRIORS

    Config = SparseCollagePriorTrainConfig

    config: Config

    data_folder = "train_images"

    def build(self, folder: Path) -> TrainingSetup:
        cfg = self.config
        if cfg.options.lmbda is not None:
            raise CollagekitError("sparse_collage_prior_train: the rate point is the recipe's lmbda, not options.lmbda")
        exclude = frozenset(validation_names()) if cfg.hold_out_validation else frozenset()
        paths, held_out = training_paths(folder, cfg.images, cfg.training.seed, exclude)
        coded = CodedStreams(paths, cfg, cfg.training.batch_size, cfg.training.seed)
        layout = {"collage": Layout(**{k: getattr(cfg.options, k) for k in COLLAGE_KEYS}).header(), "chroma": cfg.options.chroma}
        architecture = StreamPriorsConfig(streams=coded.alphabets, layout=layout)
        if cfg.model is not None and cfg.model != architecture:
            raise CollagekitError("sparse_collage_prior_train: model: is derived from options: (leave it out)")
        model = StreamPriors(architecture)
        model.start_from_counts(coded.counts())
        about = {"images": coded.images, "held_out": held_out, "symbols": coded.symbols(), "codec_lmbda": cfg.lmbda, **layout}
        return TrainingSetup(model, AdaptiveCodeLength(model), coded, about, config=architecture)
