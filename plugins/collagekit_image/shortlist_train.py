"""``task: sparse_collage_train``: train the sparse-collage codec's search shortlist
(:mod:`collagekit.shortlist`) on natural photos.

The examples are the exhaustive search's own picks: in each training image's plane groups, coded as
the codec codes them (YCbCr, chroma at half resolution), every range cell of each level whose cell
size has a network, with the source the exhaustive search picks for it, and as many of the level's
sources drawn at random (the classes' balance is measured on those). Cells flatter than ``min_rms``
grey levels are left out: the codec codes them flat whichever source they name.

Runs through :func:`collagekit.training.train` like every learned component.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from collagekit import tree
from collagekit.codec_training import CodecTrainTask, TrainingSetup
from collagekit.colour import rgb_to_ycbcr
from collagekit.errors import CollagekitError
from collagekit.search import best_pairs
from collagekit.shortlist import Shortlist, ShortlistObjective
from collagekit_image.config import SparseCollageTrainConfig
from collagekit_image.pretrained import SHORTLISTS
from collagekit_image.sparsecodec import COLLAGE_KEYS, GREY, Layout, fits, plane_groups
from collagekit_image.train import training_images, training_rgb
from collagekit_image.validation import validation_names

class SearchExamples:
    """Per cell size ``r``: ranges (n r), the exhaustive search's picks (n r), sources at random (n r).
    ``__call__(step, rank, world_size)`` draws a batch of each, deterministic in its arguments."""

    def __init__(self, paths: list[Path], layout: Layout, chroma: str, samples: list[int], min_rms: float, batch: int, seed: int) -> None:
        collage = layout.collage()
        part = collage.partitioner
        cell_samples = [int(np.prod(size)) for size in tree.level_sizes(part.range_size(1), part.levels)]
        g = torch.Generator().manual_seed(seed)
        parts: dict[str, list[Tensor]] = {f"{kind}.{r}": [] for kind in ("ranges", "matches", "sources") for r in samples}
        self.images = 0
        for path in paths:
            rgb = training_rgb(path)
            groups = plane_groups(rgb_to_ycbcr(rgb), chroma)
            if not all(fits(tuple(planes.shape[2:]), layout.range_size) for _, planes, _ in groups):
                continue
            self.images += 1
            for _, planes, _ in groups:
                for level, r in enumerate(cell_samples):
                    if r not in samples:
                        continue
                    ranges, matches, raw = best_pairs(collage, planes, level)
                    keep = (ranges - ranges.mean(-1, keepdim=True)).pow(2).mean(-1).sqrt() * GREY >= min_rms
                    sources = raw.reshape(-1, r)
                    parts[f"ranges.{r}"].append(ranges[keep])
                    parts[f"matches.{r}"].append(matches[keep])
                    parts[f"sources.{r}"].append(sources[torch.randint(sources.shape[0], (int(keep.sum()),), generator=g)])
        self.blocks = {name: torch.cat(chunks) if chunks else torch.zeros(0) for name, chunks in parts.items()}
        if self.images == 0 or any(blocks.shape[0] == 0 for blocks in self.blocks.values()):
            raise CollagekitError(f"no training image gives examples for every cell size {samples} (too small, or too flat)")
        self.samples, self.batch, self.seed = samples, batch, seed

    def counts(self) -> dict[str, int]:
        return {f"examples_{r}": int(self.blocks[f"ranges.{r}"].shape[0]) for r in self.samples}

    def __call__(self, step: int, rank: int, world_size: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(((self.seed * 1_000_003 + step) * 1024 + rank) % (1 << 63))
        out = {}
        for r in self.samples:
            pick = torch.randint(self.blocks[f"ranges.{r}"].shape[0], (self.batch,), generator=g)
            out[f"ranges.{r}"], out[f"matches.{r}"] = self.blocks[f"ranges.{r}"][pick], self.blocks[f"matches.{r}"][pick]
            out[f"sources.{r}"] = self.blocks[f"sources.{r}"][torch.randint(self.blocks[f"sources.{r}"].shape[0], (self.batch,), generator=g)]
        return out


def training_paths(folder: Path, count: int, seed: int, exclude: frozenset[str]) -> tuple[list[Path], int]:
    """``count`` images of ``folder`` drawn with ``seed`` (the validation split skipped) -> (paths, held out)."""
    paths, held_out = training_images(folder, exclude)
    order = np.random.default_rng(seed).permutation(len(paths))[:count]
    return [paths[i] for i in sorted(order)], held_out


class SparseCollageTrain(CodecTrainTask):
    store = SHORTLISTS

    Config = SparseCollageTrainConfig

    config: Config

    data_folder = "train_images"

    def build(self, folder: Path) -> TrainingSetup:
        cfg = self.config
        defaults = type(cfg.options)()
        unused = sorted(k for k in type(cfg.options).model_fields if k not in {*COLLAGE_KEYS, "chroma"} and getattr(cfg.options, k) != getattr(defaults, k))
        if unused:
            raise CollagekitError(f"sparse_collage_train: options: sets the layout the examples are searched with (the collage keys and chroma); it does not use {', '.join(unused)}")
        layout = Layout(**{k: getattr(cfg.options, k) for k in COLLAGE_KEYS})
        exclude = frozenset(validation_names()) if cfg.hold_out_validation else frozenset()
        paths, held_out = training_paths(folder, cfg.images, cfg.training.seed, exclude)
        examples = SearchExamples(paths, layout, cfg.options.chroma, cfg.model.samples, cfg.min_rms, cfg.training.batch_size, cfg.training.seed)
        model = Shortlist(cfg.model)
        about = {"images": examples.images, "held_out": held_out, "layout": layout.header(), "chroma": cfg.options.chroma, "min_rms": cfg.min_rms, **examples.counts()}
        return TrainingSetup(model, ShortlistObjective(model, cfg.lmbda, cfg.probes), examples, about)
