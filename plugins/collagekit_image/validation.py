"""The image validation split: 30 images of ``../shared/data/train_images`` that training never sees.

DESIGN section 4: design decisions are judged on data that is neither trained on nor reported as the
headline (Kodak). The split is the list in ``validation_images.txt`` beside this file (committed, so it
never moves); ``image_train`` skips those files, and ``collagekit bench kodak images=validation`` measures
on them.

How the list was drawn (``python -m collagekit_image.validation ../shared/data/train_images`` prints it
again): from each collection, the files whose shorter side is at least ``MIN_SIDE`` pixels (so that
container headers do not dominate a file's bits), ranked by the SHA-256 of ``SEED/name``, the first
``DRAW[prefix]`` taken: 20 of BSD200's 200 photos and 10 of T91's 83 large enough, about the
collections' 200:90 proportion. A hash rank, unlike a seeded shuffle, does not depend on any library's
random number generator.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

VALIDATION_LIST = Path(__file__).with_name("validation_images.txt")
SEED = "collagekit-image-validation-v1"
DRAW = {"bsd200_": 20, "t91_": 10}
MIN_SIDE = 128


def read_image_list(path: Path) -> list[str]:
    """File names listed one a line, in list order (blank lines and ``#`` comments skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def validation_names() -> list[str]:
    """The file names of the split."""
    return read_image_list(VALIDATION_LIST)


def draw(folder: Path) -> list[str]:
    """The split drawn from ``folder`` as the module docstring describes."""
    from PIL import Image

    names: list[str] = []
    for prefix, count in DRAW.items():
        candidates = []
        for path in sorted(folder.glob(f"{prefix}*.png")):
            with Image.open(path) as image:
                if min(image.size) >= MIN_SIDE:
                    candidates.append(path.name)
        if len(candidates) < count:
            raise ValueError(f"{folder} has {len(candidates)} {prefix}* images of at least {MIN_SIDE} px, need {count}")
        names += sorted(candidates, key=lambda name: hashlib.sha256(f"{SEED}/{name}".encode()).hexdigest())[:count]
    return names


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m collagekit_image.validation TRAIN_IMAGES_DIR")
    names = draw(Path(argv[0]))
    print(f"# The image validation split (see collagekit_image/validation.py): {len(names)} files of ../shared/data/train_images,")
    print(f"# drawn by `python -m collagekit_image.validation ../shared/data/train_images` (seed {SEED}).")
    print("# Never trained on (image_train skips them); `collagekit bench kodak images=validation` measures on them.")
    print("\n".join(names))


if __name__ == "__main__":
    main(sys.argv[1:])
