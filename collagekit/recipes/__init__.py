"""The recipes shipped inside the package: ``collagekit run image_compress`` from any folder.

``collagekit recipes`` lists them; ``collagekit recipes NAME -o my.yaml`` copies one out to edit.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from collagekit.errors import CollagekitError
from collagekit.registry import suggest

SUFFIX = ".yaml"


def shipped() -> dict[str, Path]:
    """Name -> file of every shipped recipe."""
    folder = Path(str(files(__name__)))
    return {path.stem: path for path in sorted(folder.glob(f"*{SUFFIX}"))}


def find(recipe: str | Path) -> Path:
    """A recipe file: ``recipe`` itself when it exists, else the shipped recipe of that name
    (``image_compress`` or ``image_compress.yaml``). Nothing else is guessed."""
    path = Path(recipe)
    if path.exists():
        return path
    known = shipped()
    name = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
    if path.parent == Path(".") and name in known:
        return known[name]
    if path.parent != Path(".") or path.suffix:
        hint = f" (the shipped recipe {name!r} runs as: collagekit run {name})" if name in known else ""
        raise CollagekitError(f"recipe {str(recipe)!r} does not exist{hint}")
    raise CollagekitError(f"no recipe file or shipped recipe {name!r}; shipped: {', '.join(known)}{suggest(name, list(known))}")


def summary(path: Path) -> str:
    """What a recipe does, in a few words: its opening comment up to the first '(', ':' or '.'."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        words += line.lstrip("# ").split()
    text = " ".join(words)
    cut = min((i for i in (text.find(" ("), text.find(":"), text.find(". ")) if i >= 0), default=len(text))
    return text[:cut].rstrip(".")
