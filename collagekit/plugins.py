"""The plugin manager: core built-ins plus entry points in group ``collagekit``, each loaded in isolation.

``COLLAGEKIT_LOAD_PLUGINS`` selects entry-point plugins: unset loads all, empty loads none, ``a,b`` loads
only those. A plugin that fails to import or to validate is skipped with a warning naming it, its
distribution version and the error; ``COLLAGEKIT_STRICT_PLUGINS=1`` (or ``strict=True``) raises instead,
for tests and plugin authors.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from collagekit import hookspecs
from collagekit.errors import CollagekitError

ENV_SELECT = "COLLAGEKIT_LOAD_PLUGINS"
ENV_STRICT = "COLLAGEKIT_STRICT_PLUGINS"
CORE = "core"


class PluginLoadWarning(UserWarning):
    """A plugin was skipped because it failed to load."""


@dataclass
class PluginInfo:
    name: str
    dist: str
    version: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


def strict_from_env() -> bool:
    return os.environ.get(ENV_STRICT, "").strip().lower() in {"1", "true", "yes", "on"}


def _selected(name: str) -> bool:
    spec = os.environ.get(ENV_SELECT)
    if spec is None:
        return True
    return name in {part.strip() for part in spec.split(",") if part.strip()}


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    return (dist.name, dist.version) if dist is not None else ("?", "?")


def report_failure(info: PluginInfo, exc: BaseException, strict: bool) -> None:
    """Record a plugin's failure; raise in strict mode, else warn once with name, version and error."""
    info.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    message = f"plugin {info.name!r} ({info.dist} {info.version}) failed to load"
    if strict:
        raise CollagekitError(f"{message}: {info.error}") from exc
    warnings.warn(f"{message} and was skipped: {info.error}", PluginLoadWarning, stacklevel=3)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what ``collagekit plugins`` shows: every plugin found, loaded or not."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}

    def add(self, module: object, info: PluginInfo, strict: bool) -> None:
        try:
            self.register(module, name=info.name)
        except Exception as exc:  # noqa: BLE001 - a plugin may fail in any way; isolate it
            report_failure(info, exc, strict)
        else:
            info.hooks = sorted(h.name for h in self.get_hookcallers(module) or [])
        self.info[info.name] = info


def load_plugin_manager(strict: bool | None = None) -> PluginManager:
    """A fresh manager with the core built-ins and every selected entry-point plugin."""
    from collagekit import __version__, builtins

    strict = strict_from_env() if strict is None else strict
    pm = PluginManager()
    pm.add(builtins, PluginInfo(CORE, "collagekit", __version__), strict=True)
    for ep in sorted(entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
        if not _selected(ep.name) or ep.name in pm.info:
            continue
        info = PluginInfo(ep.name, *_dist_of(ep))
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - isolate a broken plugin's import
            report_failure(info, exc, strict)
            pm.info[ep.name] = info
            continue
        pm.add(module, info, strict)
    return pm
