"""The image validation split: a fixed, reproducible list that image training never sees."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from collagekit.bench import DATA_ENV
from collagekit.registry import get_registry
from collagekit.tasks import RunContext
from collagekit_image.train import ImageTrain
from collagekit_image.validation import DRAW, draw, validation_names
from conftest import DATA, REPO

# The shared data, where this machine has it (the test below skips elsewhere).
TRAIN_IMAGES = Path(os.environ.get(DATA_ENV, REPO.parent / "shared" / "data")) / "train_images"


def test_the_committed_split_has_30_distinct_images_of_both_collections() -> None:
    names = validation_names()
    assert len(names) == len(set(names)) == 30
    for prefix, count in DRAW.items():
        assert sum(name.startswith(prefix) for name in names) == count
    assert not any(name.startswith("kodim") for name in names)


@pytest.mark.skipif(not TRAIN_IMAGES.is_dir(), reason="needs the shared data's train_images ($COLLAGEKIT_DATA)")
def test_the_committed_split_is_the_documented_draw() -> None:
    assert draw(TRAIN_IMAGES) == validation_names()
    assert all((TRAIN_IMAGES / name).is_file() for name in validation_names())


def _setup(folder: Path, hold_out: bool):
    config = ImageTrain.Config(crop=64, hold_out_validation=hold_out, data=str(folder))
    task = ImageTrain(config, RunContext(registry=get_registry(), device=torch.device("cpu")))
    return task.build(folder)


def test_image_training_skips_the_validation_images(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    held_out = validation_names()[0]
    shutil.copy(DATA / "kodim05_64.png", folder / "photo_a.png")
    shutil.copy(DATA / "kodim05_64.png", folder / held_out)
    setup = _setup(folder, hold_out=True)
    assert setup.about["images"] == 1 and setup.about["held_out"] == 1
    # Opting out trains on every file, the validation image included.
    setup = _setup(folder, hold_out=False)
    assert setup.about["images"] == 2 and setup.about["held_out"] == 0
