"""collagekit: Neural Collages — data as the parameters of a contractive map whose fixed point is the data.

    >>> import collagekit
    >>> code = collagekit.compress("photo.png")        # the bytes of a .clg file
    >>> image = collagekit.decompress(code, scale=2)   # a (c h w) tensor in [0, 1]

The API (:mod:`collagekit.api`): :func:`compress`, :func:`compress_files`, :func:`decompress`,
:func:`fractalize`, :func:`load_code`, :func:`save_code`. The building blocks: the grid collage operator
(:class:`GridCollage`, :class:`CollageParams`), the fixed-point solver (:func:`fixed_point`), the plugin
registry (:func:`get_registry`) and :class:`Lazy` registrations. The core is modality-generic;
modalities arrive as plugins. ``import collagekit`` is light: torch is imported when a name that needs
it is first used.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from collagekit.errors import CollagekitError

try:
    __version__ = version("collagekit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# name -> the module that defines it, imported on first access (PEP 562)
_LAZY = {
    "compress": "collagekit.api",
    "compress_files": "collagekit.api",
    "decompress": "collagekit.api",
    "fractalize": "collagekit.api",
    "load_code": "collagekit.api",
    "save_code": "collagekit.api",
    "Fractal": "collagekit.api",
    "Compressed": "collagekit.api",
    "Container": "collagekit.container",
    "GridCollage": "collagekit.operator",
    "CollageParams": "collagekit.operator",
    "fixed_point": "collagekit.solver",
    "get_registry": "collagekit.registry",
    "Registry": "collagekit.registry",
    "Lazy": "collagekit.lazy",
}

__all__ = ["CollagekitError", "__version__", *_LAZY]

if TYPE_CHECKING:
    from collagekit.api import Compressed, Fractal, compress, compress_files, decompress, fractalize, load_code, save_code
    from collagekit.container import Container
    from collagekit.lazy import Lazy
    from collagekit.operator import CollageParams, GridCollage
    from collagekit.registry import Registry, get_registry
    from collagekit.solver import fixed_point


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'collagekit' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
