"""The plugin manager: core built-ins plus entry points in group ``collagekit``, each loaded in isolation.

``COLLAGEKIT_LOAD_PLUGINS`` selects entry-point plugins: unset loads all, empty loads none, ``a,b`` loads
only those (a name no installed distribution declares is warned about). A plugin that fails to import
or to validate is skipped with a warning naming it, its distribution version and the error;
``COLLAGEKIT_STRICT_PLUGINS=1`` (or ``strict=True``) raises instead, for tests and plugin authors.

The plugin system polices its plugins, each problem one warning (strict mode: an error) that names the
distributions involved, while everything else keeps working:

* two distributions declaring the same entry-point name: collagekit's own plugin wins, else the first
  found on ``sys.path``; the other is disabled;
* an entry point named ``core`` (the built-ins' name) is skipped;
* a hook implementation that no hook specification names (``register_poolerz``) is reported; the
  plugin's other hooks still run;
* two plugins registering the same component name: the later one in load order (core, then
  collagekit's own plugins, then third-party plugins by name) is disabled (see ``registry.py``).
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
FIRST_PARTY = "collagekit"  # the distribution of the core and the shipped plugins


class PluginLoadWarning(UserWarning):
    """A plugin was skipped because it failed to load."""


@dataclass
class PluginInfo:
    name: str
    dist: str
    version: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None  # why it is not loaded (None: loaded)
    notes: list[str] = field(default_factory=list)  # problems that did not stop it loading


def strict_from_env() -> bool:
    return os.environ.get(ENV_STRICT, "").strip().lower() in {"1", "true", "yes", "on"}


def _selection() -> set[str] | None:
    """The names ``COLLAGEKIT_LOAD_PLUGINS`` selects, or None when it is unset (all)."""
    spec = os.environ.get(ENV_SELECT)
    if spec is None:
        return None
    return {part.strip() for part in spec.split(",") if part.strip()}


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    return (dist.name, dist.version) if dist is not None else ("?", "?")


def describe(info: PluginInfo) -> str:
    """``plugin 'x' (dist version)``: how every message names a plugin."""
    return f"plugin {info.name!r} ({info.dist} {info.version})"


def report_problem(info: PluginInfo, problem: str, strict: bool, consequence: str = "was skipped", fatal: bool = True) -> None:
    """Record a problem with a plugin (``fatal``: it is not loaded); raise in strict mode, else warn
    once: ``<plugin> <consequence>: <problem>``."""
    if fatal:
        info.error = problem
    else:
        info.notes.append(problem)
    if strict:
        raise CollagekitError(f"{describe(info)}: {problem}")
    warnings.warn(f"{describe(info)} {consequence}: {problem}", PluginLoadWarning, stacklevel=3)


def report_failure(info: PluginInfo, exc: BaseException, strict: bool) -> None:
    """Record a plugin's failure; raise in strict mode, else warn once with name, version and error."""
    problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
    info.error = problem
    if strict:
        raise CollagekitError(f"{describe(info)} failed to load: {problem}") from exc
    warnings.warn(f"{describe(info)} failed to load and was skipped: {problem}", PluginLoadWarning, stacklevel=3)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what ``collagekit plugins`` shows: every plugin found, loaded or not
    (``info``), and the entry points disabled because another distribution took their name (``disabled``)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.disabled: list[PluginInfo] = []

    def add(self, module: object, info: PluginInfo, strict: bool) -> None:
        self.info[info.name] = info
        try:
            self.register(module, name=info.name)
        except Exception as exc:  # noqa: BLE001 - a plugin may fail in any way; isolate it
            report_failure(info, exc, strict)
            return
        callers = self.get_hookcallers(module) or []
        info.hooks = sorted(h.name for h in callers)
        # pluggy accepts implementations of hooks nobody specified (check_pending() would raise for
        # all plugins at once): name the plugin and the closest real hook instead.
        unknown = sorted(h.name for h in callers if h.spec is None)
        if unknown:
            from collagekit.registry import suggest

            known = [name for name in dir(hookspecs) if name.startswith("register_")]
            hint = suggest(unknown[0], known)
            report_problem(info, f"implements unknown hook(s) {', '.join(unknown)}{hint}", strict, "has a problem", fatal=False)


def _pick(candidates: list[EntryPoint]) -> EntryPoint:
    """Of several entry points with one name: collagekit's own, else the first found on sys.path."""
    return next((ep for ep in candidates if _dist_of(ep)[0] == FIRST_PARTY), candidates[0])


def load_plugin_manager(strict: bool | None = None) -> PluginManager:
    """A fresh manager with the core built-ins and every selected entry-point plugin."""
    from collagekit import __version__, builtins
    from collagekit.registry import suggest

    strict = strict_from_env() if strict is None else strict
    pm = PluginManager()
    pm.add(builtins, PluginInfo(CORE, FIRST_PARTY, __version__), strict=True)
    named: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=hookspecs.PROJECT):
        named.setdefault(ep.name, []).append(ep)
    selection = _selection()
    for name in sorted((selection or set()) - set(named)):
        message = f"{ENV_SELECT} names {name!r}, which no installed distribution declares as a collagekit plugin{suggest(name, sorted(named))}"
        if strict:
            raise CollagekitError(message)
        warnings.warn(message, PluginLoadWarning, stacklevel=2)
    for name in sorted(named):
        candidates = named[name]
        if name == CORE:
            for ep in candidates:
                info = PluginInfo(name, *_dist_of(ep))
                pm.disabled.append(info)
                report_problem(info, "'core' is the name of collagekit's built-ins; choose another entry-point name", strict)
            continue
        if selection is not None and name not in selection:
            continue
        chosen = _pick(candidates)
        for ep in candidates:
            if ep is not chosen:
                info = PluginInfo(name, *_dist_of(ep))
                pm.disabled.append(info)
                problem = f"the distribution {_dist_of(chosen)[0]} {_dist_of(chosen)[1]} declares a plugin of the same name, which is loaded instead"
                report_problem(info, problem, strict, "was disabled")
        info = PluginInfo(name, *_dist_of(chosen))
        try:
            module = chosen.load()
        except Exception as exc:  # noqa: BLE001 - isolate a broken plugin's import
            report_failure(info, exc, strict)
            pm.info[name] = info
            continue
        pm.add(module, info, strict)
    return pm
