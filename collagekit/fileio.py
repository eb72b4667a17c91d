"""A user's files are safe: outputs never replace inputs or (without ``force``) existing files, and
they appear whole, together, or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from collagekit.errors import CollagekitError


def check_input(path: str | Path, what: str = "input") -> Path:
    path = Path(path)
    if not path.exists():
        raise CollagekitError(f"{what} {str(path)!r} does not exist")
    if not path.is_file():
        raise CollagekitError(f"{what} {str(path)!r} is not a file")
    return path


def check_outputs(inputs: Iterable[str | Path | None], outputs: Iterable[str | Path | None], force: bool) -> None:
    """Refuse, before any work is done: an output that is one of the inputs (also through links), one
    file named as two outputs, an output that is a folder, and an existing output unless ``force``."""
    sources = [Path(p) for p in inputs if p is not None]
    seen: dict[Path, Path] = {}
    for raw in outputs:
        if raw is None:
            continue
        path = Path(raw)
        for source in sources:
            if _same_file(path, source):
                raise CollagekitError(f"output {str(path)!r} is the input {str(source)!r}; choose another output name")
        key = path.resolve()
        if key in seen:
            raise CollagekitError(f"{str(seen[key])!r} is named as two outputs; give each output its own file")
        seen[key] = path
        if path.is_dir():
            raise CollagekitError(f"output {str(path)!r} is a directory; give a file name")
        if path.exists() and not force:
            raise CollagekitError(f"output {str(path)!r} exists; pass --force to replace it (force=True in Python)")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


@contextmanager
def outputs_together() -> Iterator[Callable[[str | Path], Path]]:
    """Files that appear together or not at all.

    The block writes each file to ``stage(path)``, a temporary path beside it that keeps its suffix (so
    writers that pick a format by suffix work); when the block succeeds every file is moved into
    place, when it fails none is, and no temporary file or folder made for it is left behind.
    """
    staged: list[tuple[Path, Path]] = []
    made: list[Path] = []

    def stage(target: str | Path) -> Path:
        path = Path(target)
        if path.is_dir():
            raise CollagekitError(f"output {str(path)!r} is a directory; give a file name")
        missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CollagekitError(f"cannot create the folder for {str(path)!r}: {exc.strerror}") from None
        made.extend(missing)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
        os.close(fd)
        staged.append((Path(name), path))
        return Path(name)

    done = False
    try:
        yield stage
        for tmp, path in staged:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
            os.replace(tmp, path)
        done = True
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        if not done:
            for folder in made:  # innermost first
                try:
                    folder.rmdir()
                except OSError:
                    break


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    with outputs_together() as stage:
        yield stage(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
