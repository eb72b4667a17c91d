"""open3d (the ``3d`` extra), where it can be loaded.

open3d links against system libraries that a bare machine may lack (libusb on Debian), and then
fails at import with an ImportError of a shared library. Everything that merely goes faster with it
(the KD-tree of :mod:`collagekit_pointcloud.chamfer`) asks :func:`problem` and falls back; what needs it
(PCD, PTS and OBJ/STL/OFF files) calls :func:`load`, which says why it is not usable.
"""

from __future__ import annotations

import functools
from typing import Any

from collagekit.errors import CollagekitError


@functools.cache
def problem() -> str | None:
    """Why open3d cannot be loaded here (not installed, or a system library it needs is missing), or None."""
    try:
        import open3d  # noqa: F401
    except ImportError as exc:  # also a shared library that fails to load
        return str(exc)
    return None


def load(what: str) -> Any:
    """The open3d module, or a one-line error saying what needs it and why it is not usable."""
    why = problem()
    if why is not None:
        raise CollagekitError(
            f'{what} needs open3d, which is not usable here ({why}); install it with: pip install "collagekit[3d]" '
            "(on Debian/Ubuntu it also needs: apt-get install libusb-1.0-0), or use .ply or .xyz files"
        )
    import open3d

    open3d.utility.set_verbosity_level(open3d.utility.VerbosityLevel.Error)
    return open3d
