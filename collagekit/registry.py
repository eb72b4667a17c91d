"""Name -> component, filled by calling every plugin's ``register_*`` hooks.

Each plugin's hooks run in isolation: if one raises, that plugin's entries are dropped and it is
reported like an import failure. A plugin registering a name another plugin already registered is
disabled (all its entries dropped) with a warning that names both plugins and their distributions (in
strict mode: an error); everything else keeps working. Asking for an unknown name lists the choices
and suggests the closest.
"""

from __future__ import annotations

import difflib
import os
import typing
from dataclasses import dataclass
from functools import partial
from typing import Any

from collagekit.errors import CollagekitError
from collagekit.lazy import Lazy
from collagekit.plugins import (
    CORE,
    ENV_SELECT,
    FIRST_PARTY,
    PluginManager,
    describe,
    load_plugin_manager,
    report_failure,
    report_problem,
    strict_from_env,
)

# kind -> the hook that fills it
KINDS: dict[str, str] = {
    "partitioner": "register_partitioners",
    "pooler": "register_poolers",
    "auxiliary": "register_auxiliaries",
    "encoder": "register_encoders",
    "solver": "register_solvers",
    "head": "register_heads",
    "task": "register_tasks",
    "modality": "register_modalities",
    "codec": "register_codecs",
    "bench": "register_benchmarks",
}
COMPONENT_KINDS = ("partitioner", "pooler", "auxiliary", "encoder", "solver", "head")


@dataclass(frozen=True)
class Entry:
    """A registered thing. ``obj`` is what the plugin registered: the thing itself, or a :class:`Lazy`
    stand-in that answers its declared attributes (a Config, a name, options) without importing it;
    :meth:`Registry.get` returns the thing itself."""

    kind: str
    name: str
    obj: Any
    plugin: str


class DuplicateNameError(CollagekitError):
    """A plugin registered a name that is taken (by ``first``, possibly itself) for one kind."""

    def __init__(self, message: str, first: str) -> None:
        super().__init__(message)
        self.first = first


def _literal_key(config_cls: type, field: str) -> str:
    info = getattr(config_cls, "model_fields", {}).get(field)
    args = typing.get_args(info.annotation) if info is not None else ()
    if info is None or typing.get_origin(info.annotation) is not typing.Literal or len(args) != 1:
        raise TypeError(f"{config_cls.__qualname__}.{field} must be declared as a one-value Literal")
    return args[0]


def key_of(kind: str, obj: Any) -> str:
    """The registry key of a registered object: its Config's name literal, or its ``name``."""
    if kind in COMPONENT_KINDS:
        return _literal_key(obj.Config, "name")
    if kind == "task":
        return _literal_key(obj.Config, "task")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"a registered {kind} needs a non-empty str 'name', got {obj!r}")
    return name


def _expected_base(kind: str) -> type | None:
    if kind not in (*COMPONENT_KINDS, "task"):
        return None
    from collagekit import interfaces, solver, tasks

    return {
        "partitioner": interfaces.Partitioner,
        "pooler": interfaces.Pooler,
        "auxiliary": interfaces.AuxiliaryDomain,
        "encoder": interfaces.Encoder,
        "solver": solver.Solver,
        "head": interfaces.LatentHead,
        "task": tasks.Task,
    }.get(kind)


def _check_kind(kind: str, obj: Any) -> None:
    base = _expected_base(kind)
    if base is not None and not (isinstance(obj, type) and issubclass(obj, base)):
        raise TypeError(f"register_{kind}: expected a subclass of {base.__name__}, got {obj!r}")


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def choose_from(kind: str, names: list[str]) -> str:
    """``"choose from: a, b"``, or, when there is nothing to choose, why (no plugin brings one)."""
    if names:
        return f"choose from: {', '.join(names)}"
    selected = os.environ.get(ENV_SELECT)
    why = f"{ENV_SELECT}={selected!r} leaves its plugin out" if selected is not None else "is a plugin missing?"
    return f"no {kind} is installed ({why})"


def plugin_versions(registry: Any, codec: str | None = None) -> dict[str, str]:
    """Versions of collagekit and every loaded plugin, written into every file collagekit saves
    (empty for library use without a registry).

    With ``codec``: only the core and the plugin that registered that codec, the ones that made a
    compressed file (its header counts in every bits-per-pixel figure; the full list was ~130 bytes).
    """
    pm = getattr(registry, "pm", None)
    if pm is None:
        return {}
    versions = {name: info.version for name, info in pm.info.items() if info.error is None}
    if codec is None:
        return versions
    makers = {CORE, registry.entry("codec", codec).plugin}
    return {name: version for name, version in versions.items() if name in makers}


def component_providers(registry: Registry, needs: list[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """``"kind:name"`` -> the plugin, distribution and version that provide it, for each component a
    code needs: what a decoder lacking one must install."""
    out = {}
    for kind, name in needs:
        plugin = registry.entry(kind, name).plugin
        info = registry.pm.info[plugin]
        out[f"{kind}:{name}"] = {"plugin": plugin, "distribution": info.dist, "version": info.version}
    return out


class Registry:
    def __init__(self, pm: PluginManager) -> None:
        self.pm = pm
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._loaded: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------ filling
    def add(self, kind: str, obj: Any, plugin: str) -> None:
        if not isinstance(obj, Lazy):  # a Lazy one is checked when it is first used
            _check_kind(kind, obj)
        name = key_of(kind, obj)
        existing = self._entries[kind].get(name)
        if existing is not None:
            if existing.plugin == plugin:
                raise DuplicateNameError(f"it registers the {kind} {name!r} twice", plugin)
            first = self.pm.info[existing.plugin]
            raise DuplicateNameError(
                f"it registers the {kind} {name!r}, which {describe(first)} already registers", existing.plugin
            )
        self._entries[kind][name] = Entry(kind, name, obj, plugin)

    def collect(self, strict: bool) -> None:
        impls = {
            hook: {impl.plugin_name: impl.function for impl in getattr(self.pm.hook, hook).get_hookimpls()}
            for hook in KINDS.values()
        }
        for plugin_name, plugin in sorted(self.pm.list_name_plugin(), key=lambda item: self._load_order(item[0])):
            info = self.pm.info[plugin_name]
            try:
                for kind, hook in KINDS.items():
                    function = impls[hook].get(plugin_name)
                    if function is not None:
                        function(register=partial(self.add, kind, plugin=plugin_name))
            except DuplicateNameError as exc:
                self._drop(plugin_name, plugin)
                hint = f"to use it instead, leave out plugin {exc.first!r} with {ENV_SELECT}" if exc.first != plugin_name else "it must use each name once"
                report_problem(info, f"{exc}; {hint}", strict, "was disabled")
            except Exception as exc:  # noqa: BLE001 - one plugin's broken hook must not break the rest
                self._drop(plugin_name, plugin)
                report_failure(info, exc, strict)

    def _load_order(self, plugin: str) -> tuple[int, str]:
        """The core, then collagekit's own plugins, then the rest by name: on a name clash the
        later plugin is the one disabled, so a third-party plugin never disables a shipped one."""
        info = self.pm.info[plugin]
        return (0 if plugin == CORE else 1 if info.dist == FIRST_PARTY else 2, plugin)

    def _drop(self, plugin_name: str, plugin: object) -> None:
        """Remove everything a plugin registered, and the plugin."""
        for entries in self._entries.values():
            for key in [k for k, e in entries.items() if e.plugin == plugin_name]:
                del entries[key]
        self.pm.unregister(plugin)

    # ------------------------------------------------------------ lookup
    def entries(self, kind: str) -> list[Entry]:
        return sorted(self._entries[kind].values(), key=lambda e: e.name)

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entry(self, kind: str, name: str) -> Entry:
        if kind not in self._entries:
            raise CollagekitError(f"unknown kind {kind!r}; choose from: {', '.join(KINDS)}{suggest(kind, list(KINDS))}")
        found = self._entries[kind].get(name)
        if found is None:
            choices = self.names(kind)
            raise CollagekitError(f"unknown {kind} {name!r}; {choose_from(kind, choices)}{suggest(name, choices)}")
        return found

    def get(self, kind: str, name: str) -> Any:
        """The registered thing itself (a lazily registered one is imported now)."""
        entry = self.entry(kind, name)
        if not isinstance(entry.obj, Lazy):
            return entry.obj
        key = (kind, name)
        if key not in self._loaded:
            try:
                obj = entry.obj.load()
                if kind == "codec" and isinstance(obj, type):
                    obj = obj()  # codecs are stateless objects; a lazy registration may name the class
                _check_kind(kind, obj)
            except CollagekitError:
                raise
            except Exception as exc:  # noqa: BLE001 - report which plugin's registration is broken
                raise CollagekitError(
                    f"plugin {entry.plugin!r} registered {kind} {name!r} as {entry.obj.target}, which does not load: "
                    + f"{type(exc).__name__}: {exc}".splitlines()[0]
                ) from exc
            self._loaded[key] = obj
        return self._loaded[key]

    def build(self, kind: str, config: Any) -> Any:
        """Instantiate the component whose Config ``config`` is."""
        return self.get(kind, config.name)(config)

    def kind_with_names(self, names: set[str]) -> str | None:
        for kind, entries in self._entries.items():
            if names and names <= set(entries):
                return kind
        return None


_PLUGIN_MANAGER: PluginManager | None = None
_REGISTRY: Registry | None = None


def get_plugin_manager(refresh: bool = False, strict: bool | None = None) -> PluginManager:
    """The process-wide plugin manager: plugins' entry modules imported, no component hooks called yet.

    Enough for the CLI to add plugins' sub-commands without importing any component (and torch)."""
    global _PLUGIN_MANAGER
    if _PLUGIN_MANAGER is None or refresh:
        _PLUGIN_MANAGER = load_plugin_manager(strict_from_env() if strict is None else strict)
    return _PLUGIN_MANAGER


def get_registry(refresh: bool = False, strict: bool | None = None) -> Registry:
    """The process-wide registry (built on first use; ``refresh`` rebuilds it, e.g. after env changes)."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        strict = strict_from_env() if strict is None else strict
        registry = Registry(get_plugin_manager(refresh, strict))
        registry.collect(strict)
        _REGISTRY = registry
    return _REGISTRY
