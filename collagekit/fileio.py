"""A user's files are safe: outputs never replace inputs or (without ``force``) existing files, and
they appear whole, together, or not at all.

A file is written to a hidden temporary beside it, ``.<stem>.<pid>.<random>.part<suffix>``, and moved
into place only when complete. An error, Ctrl-C or SIGTERM (the CLI turns it into an exception)
removes the temporary; SIGKILL or a power cut cannot be caught and leave it behind. Such leftovers
never pass for outputs (hidden, ``.part`` in the name), and the next write of the same output removes
those whose process (the pid in the name) no longer runs on this machine; ``rm .*.part.*`` in the
output folder removes them by hand.
"""

from __future__ import annotations

import glob
import os
import re
import sys
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
        try:
            _remove_stale_parts(path)
            fd, name = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}.", suffix=f".part{path.suffix}", dir=path.parent)
        except OSError as exc:
            raise CollagekitError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
        os.close(fd)
        staged.append((Path(name), path))
        return Path(name)

    done = False
    try:
        yield stage
        for tmp, path in staged:
            try:
                os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
                os.replace(tmp, path)
            except OSError as exc:
                raise CollagekitError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
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


def _remove_stale_parts(path: Path) -> None:
    """Remove temporaries of ``path`` left by killed runs: those whose pid no longer runs here."""
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.(\d+)\.[^.]+\.part{re.escape(path.suffix)}")
    for leftover in path.parent.glob(f".{glob.escape(path.stem)}.*.part{glob.escape(path.suffix)}"):
        match = pattern.fullmatch(leftover.name)
        if match and not _running(int(match.group(1))):
            leftover.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs here (in doubt: yes, and its temporary is left alone)."""
    if pid == os.getpid() or os.name != "posix":  # elsewhere os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def native_output() -> Iterator[list[str]]:
    """Capture what native libraries print on file descriptors 1 and 2 while the block runs (open3d's
    ``RPly: ...`` and ``[Open3D Error]``, libmpg123's notes): the yielded list receives the non-empty
    lines when the block ends, for the caller to fold into its own one-line message or to drop."""
    lines: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no standard streams at all: nothing to capture
        yield lines
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            lines.extend(line.strip() for line in sink.read().decode(errors="replace").splitlines() if line.strip())
