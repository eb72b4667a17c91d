"""Recipes: YAML files validated by pydantic models built from the registry.

The recipe model is a discriminated union (on ``task``) of every registered task's Config, in which every
component slot is itself a discriminated union (on ``name``) of the registered Configs of its kind.
``key=value`` overrides from the command line are applied before validation. Every error reads
``file:line: dotted.path: message``.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, BeforeValidator, Field, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from collagekit.config import Slot
from collagekit.errors import CollagekitError
from collagekit.registry import Registry, choose_from, suggest
from collagekit.tasks import TaskConfig

MAX_RECIPE_BYTES = 1_000_000


# ---------------------------------------------------------------- models from the registry
def _union(configs: list[type[BaseModel]], tag: str) -> Any:
    if len(configs) == 1:
        # pydantic needs two variants for a discriminated union; check the tag the same way by hand.
        expected = configs[0].model_fields[tag].default
        return Annotated[configs[0], BeforeValidator(partial(_check_tag, tag, expected))]
    return Annotated[Union[tuple(configs)], Field(discriminator=tag)]  # noqa: UP007 - runtime union


def _check_tag(tag: str, expected: str, value: Any) -> Any:
    if isinstance(value, dict):
        if tag not in value:
            raise PydanticCustomError("union_tag_not_found", "missing tag", {"discriminator": tag})
        if value[tag] != expected:
            raise PydanticCustomError(
                "union_tag_invalid", "unknown tag", {"tag": str(value[tag]), "expected_tags": f"'{expected}'"}
            )
    return value


def _slot_of(info: FieldInfo) -> Slot | None:
    return next((m for m in info.metadata if isinstance(m, Slot)), None)


class RecipeModels:
    """Specialises Config classes against one registry (cached per class)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._cache: dict[type, type] = {}

    def slot_union(self, kind: str) -> Any:
        configs = [self.specialize(e.obj.Config) for e in self.registry.entries(kind)]
        if not configs:
            raise CollagekitError(f"no {kind} is registered: is a plugin missing?")
        return _union(configs, "name")

    def slot_union_adapter(self, kind: str) -> TypeAdapter:
        """Validates one Config of ``kind`` (e.g. a solver config stored in a file header)."""
        return TypeAdapter(self.slot_union(kind))

    def specialize(self, cls: type[BaseModel]) -> type[BaseModel]:
        """``cls`` with every slot (also in nested models) replaced by the registry's union."""
        if cls in self._cache:
            return self._cache[cls]
        self._cache[cls] = cls  # guards recursion through self-referencing models
        overrides: dict[str, Any] = {}
        for fname, info in cls.model_fields.items():
            slot = _slot_of(info)
            annotation = info.annotation
            if slot is not None:
                union = self.slot_union(slot.kind)
                new = list[union] if typing.get_origin(annotation) is list else union
            elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
                new = self.specialize(annotation)
                if new is annotation:
                    continue
            else:
                continue
            # The new annotation's own FieldInfo (it carries the union's discriminator) merged with the
            # field's default and description; the Slot marker is dropped.
            kept = FieldInfo.merge_field_infos(FieldInfo.from_annotation(new), info)
            kept.annotation = new
            kept.metadata = [m for m in kept.metadata if not isinstance(m, Slot)]
            overrides[fname] = (new, kept)
        special = create_model(cls.__name__, __base__=cls, __module__=cls.__module__, **overrides) if overrides else cls
        self._cache[cls] = special
        return special

    def recipe_adapter(self) -> TypeAdapter:
        configs = [self.specialize(e.obj.Config) for e in self.registry.entries("task")]
        if not configs:
            raise CollagekitError("no task is registered: is a plugin missing?")
        return TypeAdapter(_union(configs, "task"))


# ---------------------------------------------------------------- bounded YAML with line numbers
MAX_YAML_DEPTH = 64  # nesting, counted through aliases; recipes use about 5
MAX_YAML_NODES = 100_000  # values once every alias is expanded; recipes hold about 50


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounds a hostile file cannot get past: nesting depth (checked while
    composing, before Python's recursion limit is near), and after composing, no alias that contains
    itself and at most :data:`MAX_YAML_NODES` values with aliases expanded (the "billion laughs").
    Numbers such as ``1e-300`` are floats, as in YAML 1.2 (YAML 1.1 wants ``1.0e-300``)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.MarkedYAMLError(problem=f"nested more than {MAX_YAML_DEPTH} levels deep", problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _check_graph(root: yaml.Node) -> None:
    """Refuse alias cycles, and too many or too deeply nested values once aliases are expanded.

    Iterative, memoised per node: an alias bomb's graph is small, its expansion is not."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value if isinstance(node, yaml.SequenceNode) else []
        if done:
            on_path.discard(id(node))
            size[id(node)] = 1 + sum(size[id(c)] for c in children)
            depth[id(node)] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[id(node)] > MAX_YAML_NODES:
                raise yaml.MarkedYAMLError(problem=f"it expands to more than {MAX_YAML_NODES:,} values (aliases repeat their anchor)", problem_mark=node.start_mark)
            if depth[id(node)] > MAX_YAML_DEPTH:
                raise yaml.MarkedYAMLError(problem=f"nested more than {MAX_YAML_DEPTH} levels deep (counting aliases)", problem_mark=node.start_mark)
            continue
        if id(node) in size:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise yaml.MarkedYAMLError(problem="an alias refers to a value that contains it (a recursive structure)", problem_mark=child.start_mark)
            if id(child) not in size:
                stack.append((child, False))


def load_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """YAML text -> (data, its node tree), with :class:`BoundedLoader`'s bounds; raises yaml.YAMLError."""
    loader = BoundedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_graph(root)
        try:
            return loader.construct_document(root), root
        except (ValueError, OverflowError) as exc:  # an integer of thousands of digits, say
            raise yaml.MarkedYAMLError(problem=str(exc).splitlines()[0], problem_mark=root.start_mark) from None
    finally:
        loader.dispose()


def _line_index(root: yaml.Node | None) -> dict[tuple, int]:
    """Dotted path -> 1-based line of its key (or list item) in the YAML text (bounded by load_yaml's checks)."""
    index: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, key.value)
                index[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                index[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return index


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``a.b.0.c=value`` -> (['a', 'b', 0, 'c'], value parsed as a YAML scalar or flow value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise CollagekitError(f"override {text!r} must look like key=value (for example fit.steps=100)")
    path: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    try:
        value = load_yaml(raw)[0] if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def _first_non_finite(data: Any) -> tuple | None:
    """The path of the first NaN or infinite number in recipe data (``.inf``, ``1e999``), or None."""
    stack: list[tuple[Any, tuple]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            return path
        if isinstance(node, dict):
            stack.extend((v, (*path, k)) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(node))))
    return None


def apply_override(data: dict, path: list[str | int], value: Any) -> None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise CollagekitError(f"override {'.'.join(map(str, path))}: no list item {part}")
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise CollagekitError(f"override {'.'.join(map(str, path))}: {part!r} is not a mapping")
        if part not in node or not isinstance(node[part], (dict, list)):
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last > len(node):
            raise CollagekitError(f"override {'.'.join(map(str, path))}: no list item {last}")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    else:
        node[last] = value


def _plain(value: Any) -> Any:
    """A default value as plain YAML-like data (models dumped), safe to edit in place."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _fill_defaults(data: dict, path: list[str | int], registry: Registry) -> bool:
    """Write the defaults an override descends through into ``data``; True when ``path``'s parent
    node is a component (a registry slot's value, whose ``name`` picks the component).

    ``encoder.steps=50`` on a recipe that leaves ``encoder`` at its default must edit that default
    component (``{name: fit, steps: 50}``), not create a nameless ``{steps: 50}``.
    """
    task = data.get("task")
    if task not in registry.names("task"):
        return False
    node: Any = data
    model: type[BaseModel] | None = registry.get("task", task).Config
    item_slot: Slot | None = None
    in_component = False
    for part in path[:-1]:
        if isinstance(node, list):
            if not (isinstance(part, int) and part < len(node)):
                return False
            node = node[part]
            model = _component_config(item_slot, node, registry)
            in_component = item_slot is not None and isinstance(node, dict)
            continue
        if not isinstance(node, dict) or model is None or part not in model.model_fields:
            return False
        info = model.model_fields[part]
        if part not in node and not info.is_required():
            node[part] = _plain(info.get_default(call_default_factory=True))
        node = node.get(part)
        slot = _slot_of(info)
        in_component = slot is not None and isinstance(node, dict)
        if slot is not None and isinstance(node, list):
            model, item_slot = None, slot
        elif slot is not None:
            model = _component_config(slot, node, registry)
        elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            model = info.annotation
        else:
            model = None
    return in_component


def _component_config(slot: Slot | None, node: Any, registry: Registry) -> type[BaseModel] | None:
    if slot is None or not isinstance(node, dict) or node.get("name") not in registry.names(slot.kind):
        return None
    return registry.get(slot.kind, node["name"]).Config


def override(data: dict, path: list[str | int], value: Any, registry: Registry) -> None:
    """Set ``path`` to ``value`` in recipe data, on top of the task's defaults.

    Switching a component (``collage.partitioner.name=other``) starts it from the new component's
    defaults: the old component's settings mean nothing to the new one.
    """
    # Only a component's ``name`` switches components; a task or plain sub-model may have a field
    # that happens to be called ``name`` (a model's name, say), which is just a value.
    if _fill_defaults(data, path, registry) and path[-1] == "name":
        parent = _lookup(data, path[:-1])
        if isinstance(parent, dict) and parent.get("name") != value:
            parent.clear()
    apply_override(data, path, value)


def _lookup(data: Any, path: list[str | int]) -> Any:
    node = data
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return None
    return node


def apply_overrides(data: dict, overrides: list[str], registry: Registry) -> set[tuple]:
    """Apply ``key=value`` overrides (on top of the task's defaults); return the overridden paths."""
    overridden: set[tuple] = set()
    for text in overrides:
        key, value = parse_override(text)
        override(data, key, value, registry)
        overridden.add(tuple(key))
    return overridden


@dataclass
class Recipe:
    """A validated recipe: the task's Config and where it came from."""

    config: TaskConfig
    source: str


def _clean_loc(loc: tuple, data: Any) -> list[str | int]:
    """Drop pydantic's union tags and member names from an error location, following the data."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict):
            if part in node:
                out.append(part)
                node = node[part]
            elif part in (node.get("name"), node.get("task")):
                continue  # the discriminator's tag, not a field
            else:
                out.append(part)
                node = None
        elif isinstance(node, list) and isinstance(part, int):
            out.append(part)
            node = node[part] if part < len(node) else None
        elif node is None and not out:
            out.append(part)
        else:
            break  # past a scalar: the rest names union members (int, tuple[...])
    return out


def _unknown(tag: str, expected: list[str], registry: Registry) -> str:
    kind = registry.kind_with_names(set(expected)) or "component"
    return f"unknown {kind} {tag!r}; choose from: {', '.join(sorted(expected))}{suggest(tag, expected)}"


def _message(error: dict, registry: Registry) -> str:
    kind_of_error = error["type"]
    ctx = error.get("ctx") or {}
    if kind_of_error == "union_tag_invalid":
        expected = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",")]
        return _unknown(str(ctx.get("tag")), expected, registry)
    if kind_of_error == "union_tag_not_found":
        return f"missing {str(ctx.get('discriminator', 'name')).strip(chr(39))} (which component to use)"
    return error["msg"]


def format_errors(
    exc: ValidationError,
    data: Any,
    registry: Registry,
    source: str,
    lines: dict[tuple, int],
    overridden: set[tuple],
) -> str:
    seen: dict[tuple, str] = {}
    for error in exc.errors():
        loc = tuple(_clean_loc(error["loc"], data))
        node = _lookup(data, list(loc))
        if error["type"] == "union_tag_invalid" and isinstance(node, dict) and "name" in node:
            loc = (*loc, "name")  # point at the line that names the unknown component
        if loc not in seen:
            seen[loc] = _message(error, registry)
    rows = [f"{_where(loc, source, lines, overridden)}: {'.'.join(str(p) for p in loc) or '(top level)'}: {msg}" for loc, msg in seen.items()]
    # One line: the first few problems, and how many more there are.
    shown = "; ".join(rows[:MAX_SHOWN_ERRORS])
    return shown if len(rows) <= MAX_SHOWN_ERRORS else f"{shown} (and {len(rows) - MAX_SHOWN_ERRORS} more)"


MAX_SHOWN_ERRORS = 3


def _where(loc: tuple, source: str, lines: dict[tuple, int], overridden: set[tuple]) -> str:
    """``file:line`` of a value (its closest enclosing key found in the text), or the command line."""
    if any(loc[: len(o)] == o for o in overridden):
        return "command-line override"
    prefix = next((loc[:i] for i in range(len(loc), -1, -1) if loc[:i] in lines), ())
    return f"{source}:{lines.get(prefix, 1)}"


def validate_data(
    data: Any,
    registry: Registry,
    source: str = "<recipe>",
    lines: dict[tuple, int] | None = None,
    overridden: set[tuple] | None = None,
) -> TaskConfig:
    if not isinstance(data, dict):
        raise CollagekitError(f"{source}:1: a recipe must be a mapping with a 'task' key")
    task = data.get("task")
    if task is None:
        raise CollagekitError(f"{source}:1: task: missing; {choose_from('task', registry.names('task'))}")
    if task not in registry.names("task"):
        names = registry.names("task")
        line = (lines or {}).get(("task",), 1)
        raise CollagekitError(f"{source}:{line}: task: unknown task {task!r}; {choose_from('task', names)}{suggest(str(task), names)}")
    bad_number = _first_non_finite(data)
    if bad_number is not None:
        dotted = ".".join(map(str, bad_number))
        raise CollagekitError(f"{_where(bad_number, source, lines or {}, overridden or set())}: {dotted}: must be a finite number")
    adapter = RecipeModels(registry).recipe_adapter()
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise CollagekitError(format_errors(exc, data, registry, source, lines or {}, overridden or set())) from None


def read_recipe(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """A recipe file's data (not yet validated) and the line of every key; bad files are one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise CollagekitError(f"recipe {str(path)!r} does not exist")
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise CollagekitError(f"recipe {str(path)!r} is larger than {MAX_RECIPE_BYTES} bytes; is it really a recipe?")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CollagekitError(f"recipe {str(path)!r} is not UTF-8 text") from None
    try:
        data, root = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CollagekitError(f"{path}:{line}: invalid YAML: {problem}") from None
    return ({} if data is None else data), _line_index(root)


def load_recipe(path: str | Path, registry: Registry, overrides: list[str] = ()) -> Recipe:
    """Read, override and validate a recipe file; every problem is a :class:`CollagekitError`."""
    data, lines = read_recipe(path)
    overridden = apply_overrides(data, list(overrides), registry) if isinstance(data, dict) else set()
    config = validate_data(data, registry, str(path), lines, overridden)
    return Recipe(config=config, source=str(path))


def recipe_schema(registry: Registry) -> dict:
    """The JSON schema of every recipe the installed plugins accept."""
    return RecipeModels(registry).recipe_adapter().json_schema()
