"""Output files appear whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from collagekit.errors import CollagekitError


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    The temporary file keeps ``path``'s suffix so writers that pick a format by suffix (Pillow) work.
    """
    path = Path(path)
    if path.is_dir():
        raise CollagekitError(f"output {str(path)!r} is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CollagekitError(f"cannot create the folder for {str(path)!r}: {exc.strerror}") from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_input(path: str | Path, what: str = "input") -> Path:
    path = Path(path)
    if not path.exists():
        raise CollagekitError(f"{what} {str(path)!r} does not exist")
    if not path.is_file():
        raise CollagekitError(f"{what} {str(path)!r} is not a file")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
