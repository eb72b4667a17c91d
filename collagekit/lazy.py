"""Stand-ins for what plugins register, so that naming and describing a thing does not import it.

``collagekit list``, ``schema``, ``validate``, ``plugins`` and ``--help`` need names, Configs and option
declarations, never tensors. A plugin that registers ::

    register(Lazy("collagekit_image.components:ImageTiles", Config=TilesConfig))

instead of ``register(ImageTiles)`` lets them run without importing torch: reading a declared
attribute (``Config``) answers from the declaration, anything else imports ``collagekit_image.components``
first. The implementation must carry the declared values itself (``ImageTiles.Config is TilesConfig``),
which is checked when it is imported, so the declaration cannot drift from the code.

A ``Lazy`` is also callable: ``Lazy("pkg.module:function")`` stands in for a function, e.g. a
modality's loader, inside a declaration that must stay light.
"""

from __future__ import annotations

import importlib
from typing import Any

_UNSET = object()


class Lazy:
    """``target`` is ``"package.module:attribute"``; ``declared`` are attributes readable without importing it."""

    __slots__ = ("_loaded", "declared", "target")

    def __init__(self, target: str, **declared: Any) -> None:
        module, sep, attribute = target.partition(":")
        if not (sep and module and attribute):
            raise TypeError(f"Lazy target must look like 'package.module:attribute', got {target!r}")
        self.target = target
        self.declared = declared
        self._loaded: Any = _UNSET

    def load(self) -> Any:
        """Import the target (once) and check that it carries what was declared."""
        if self._loaded is _UNSET:
            module, _, attribute = self.target.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attribute.split("."):
                obj = getattr(obj, part)
            for key, value in self.declared.items():
                if getattr(obj, key, _UNSET) != value:
                    raise TypeError(f"{self.target}.{key} is not the {key} declared with it ({value!r})")
            self._loaded = obj
        return self._loaded

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found normally: declared attributes first, then the target's.
        if name.startswith("__"):
            raise AttributeError(name)
        declared = object.__getattribute__(self, "declared")
        if name in declared:
            return declared[name]
        return getattr(self.load(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Lazy({self.target!r})"
