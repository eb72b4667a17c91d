"""Plugin loading: isolation of broken plugins, selection, strict mode, duplicate names, the hook API."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from collagekit import hookspecs
from collagekit.errors import CollagekitError
from collagekit.plugins import PluginLoadWarning
from collagekit.registry import KINDS

from conftest import make_distribution, run_cli

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"

BROKEN = {"collagekit_broken.py": "import this_module_does_not_exist\n"}

DUPLICATE = {
    "collagekit_dupe.py": '''
from collagekit.hookspecs import hookimpl

@hookimpl
def register_partitioners(register):
    from collagekit_image.components import ImageTiles
    register(ImageTiles)
'''
}

RAISING_HOOK = {
    "collagekit_raising.py": '''
from collagekit.hookspecs import hookimpl

@hookimpl
def register_poolers(register):
    from collagekit.grid import AveragePooler

    class MaxPooler(AveragePooler):
        class Config(AveragePooler.Config.__base__):
            name: str = "max"   # not a Literal: the registry refuses it
    register(MaxPooler)
'''
}


def _path(root: Path) -> str:
    """PYTHONPATH with ``root`` first (and whatever the run already had, e.g. a checkout's sources)."""
    return os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)


def _install(tmp_path: Path, monkeypatch, dist: str, entry: str, modules: dict[str, str]) -> Path:
    root = make_distribution(tmp_path / dist, dist, "0.0.1", {entry: f"{next(iter(modules))[:-3]}"}, modules)
    monkeypatch.syspath_prepend(str(root))
    return root


def test_first_party_plugins_come_through_entry_points(fresh_registry) -> None:
    registry = fresh_registry()
    assert set(registry.pm.info) >= {"core", "image"}
    assert registry.entry("partitioner", "tiles2d").plugin == "image"
    assert registry.entry("solver", "anderson").plugin == "core"


def test_broken_plugin_is_skipped_with_a_warning(tmp_path, monkeypatch, fresh_registry) -> None:
    _install(tmp_path, monkeypatch, "collagekit-broken", "broken", BROKEN)
    with pytest.warns(PluginLoadWarning, match=r"plugin 'broken' \(collagekit-broken 0\.0\.1\) failed to load.*ModuleNotFoundError"):
        registry = fresh_registry()
    assert registry.pm.info["broken"].error
    assert "tiles2d" in registry.names("partitioner")  # everything else still works


def test_strict_mode_raises_for_a_broken_plugin(tmp_path, monkeypatch, fresh_registry) -> None:
    _install(tmp_path, monkeypatch, "collagekit-broken", "broken", BROKEN)
    with pytest.raises(CollagekitError, match="plugin 'broken'"):
        fresh_registry(strict=True)
    monkeypatch.setenv("COLLAGEKIT_STRICT_PLUGINS", "1")
    with pytest.raises(CollagekitError, match="plugin 'broken'"):
        fresh_registry()


def test_a_hook_that_raises_drops_only_that_plugin(tmp_path, monkeypatch, fresh_registry) -> None:
    _install(tmp_path, monkeypatch, "collagekit-raising", "raising", RAISING_HOOK)
    with pytest.warns(PluginLoadWarning, match="plugin 'raising'.*Literal"):
        registry = fresh_registry()
    assert "max" not in registry.names("pooler")
    assert "average" in registry.names("pooler")


CLASH = r"plugin 'dupe' \(collagekit-dupe 0\.0\.1\).*registers the partitioner 'tiles2d', which plugin 'image' \(collagekit [0-9.]+\) already registers"


def test_a_duplicate_component_name_disables_the_newcomer_only(tmp_path, monkeypatch, fresh_registry) -> None:
    _install(tmp_path, monkeypatch, "collagekit-dupe", "dupe", DUPLICATE)
    with pytest.warns(PluginLoadWarning, match=CLASH + r".*leave out plugin 'image' with COLLAGEKIT_LOAD_PLUGINS"):
        registry = fresh_registry()
    assert registry.entry("partitioner", "tiles2d").plugin == "image"  # the shipped plugin keeps its name
    assert "dupe" not in registry.pm.get_plugins() and registry.pm.info["dupe"].error
    assert "tiles2d" in registry.names("partitioner") and "pifs" in registry.names("codec")


def test_a_duplicate_component_name_is_an_error_in_strict_mode(tmp_path, monkeypatch, fresh_registry) -> None:
    _install(tmp_path, monkeypatch, "collagekit-dupe", "dupe", DUPLICATE)
    with pytest.raises(CollagekitError, match=CLASH):
        fresh_registry(strict=True)


def test_the_cli_keeps_working_beside_a_clashing_plugin(tmp_path) -> None:
    root = make_distribution(tmp_path / "site", "collagekit-dupe", "0.0.1", {"dupe": "collagekit_dupe"}, DUPLICATE)
    for args in (["plugins"], ["list", "partitioner"]):
        result = run_cli(*args, env={"PYTHONPATH": str(root), "COLUMNS": "250"})
        assert result.returncode == 0, result.stderr
        [warning] = result.stderr.splitlines()
        assert re.match(r"warning: " + CLASH, warning)
    assert "dupe" in result.stdout or "tiles2d" in result.stdout


SHADOW_IMAGE = {
    "collagekit_shadow.py": '''
from collagekit.hookspecs import hookimpl

@hookimpl
def register_poolers(register):
    raise RuntimeError("the shadow plugin must never be loaded")
'''
}


def test_a_second_distribution_with_the_same_entry_point_name_is_disabled(tmp_path, monkeypatch, fresh_registry) -> None:
    """A third-party entry point named 'image' does not make the shipped image plugin vanish."""
    _install(tmp_path, monkeypatch, "collagekit-shadow", "image", SHADOW_IMAGE)
    pattern = r"plugin 'image' \(collagekit-shadow 0\.0\.1\) was disabled: the distribution collagekit [0-9.]+ declares a plugin of the same name"
    with pytest.warns(PluginLoadWarning, match=pattern):
        registry = fresh_registry()
    assert registry.pm.info["image"].dist == "collagekit" and "tiles2d" in registry.names("partitioner")
    assert [info.dist for info in registry.pm.disabled] == ["collagekit-shadow"]
    with pytest.raises(CollagekitError, match=pattern.split(" was disabled")[0]):
        fresh_registry(strict=True)


def test_an_entry_point_named_core_is_reported(tmp_path, monkeypatch, fresh_registry) -> None:
    _install(tmp_path, monkeypatch, "collagekit-corely", "core", SHADOW_IMAGE)
    with pytest.warns(PluginLoadWarning, match=r"plugin 'core' \(collagekit-corely 0\.0\.1\) was skipped: 'core' is the name of collagekit's built-ins"):
        registry = fresh_registry()
    assert registry.pm.info["core"].dist == "collagekit"


MISSPELT_HOOK = {
    "collagekit_misspelt.py": '''
from collagekit.hookspecs import hookimpl

@hookimpl
def register_poolerz(register):
    pass

@hookimpl
def register_solvers(register):
    from typing import Literal

    from collagekit.config import SolverConfig
    from collagekit.solver import Picard

    class Slow(Picard):
        class Config(SolverConfig):
            name: Literal["slow"] = "slow"

    register(Slow)
'''
}


def test_an_unknown_hook_is_warned_about_and_refused_in_strict_mode(tmp_path, monkeypatch, fresh_registry) -> None:
    _install(tmp_path, monkeypatch, "collagekit-misspelt", "misspelt", MISSPELT_HOOK)
    pattern = r"plugin 'misspelt' \(collagekit-misspelt 0\.0\.1\).*unknown hook\(s\) register_poolerz \(did you mean 'register_poolers'\?\)"
    with pytest.warns(PluginLoadWarning, match=pattern):
        registry = fresh_registry()
    assert registry.pm.info["misspelt"].error is None and registry.pm.info["misspelt"].notes
    assert "slow" in registry.names("solver")  # its real hooks still run
    with pytest.raises(CollagekitError, match=pattern):
        fresh_registry(strict=True)


def test_unknown_names_in_the_selection_are_warned_about(monkeypatch, fresh_registry) -> None:
    monkeypatch.setenv("COLLAGEKIT_LOAD_PLUGINS", "image,imgae")
    with pytest.warns(PluginLoadWarning, match=r"COLLAGEKIT_LOAD_PLUGINS names 'imgae', which no installed distribution declares.*did you mean 'image'"):
        registry = fresh_registry()
    assert set(registry.pm.info) == {"core", "image"}


def test_nothing_to_choose_from_says_why(monkeypatch, fresh_registry) -> None:
    monkeypatch.setenv("COLLAGEKIT_LOAD_PLUGINS", "")
    registry = fresh_registry()
    with pytest.raises(CollagekitError, match=r"unknown partitioner 'tiles2d'; no partitioner is installed \(COLLAGEKIT_LOAD_PLUGINS='' leaves its plugin out\)"):
        registry.get("partitioner", "tiles2d")


@pytest.mark.parametrize(("select", "expected"), [("", {"core"}), ("image", {"core", "image"}), ("nope", {"core"})])
@pytest.mark.filterwarnings("ignore:COLLAGEKIT_LOAD_PLUGINS names 'nope'")
def test_load_plugins_selection(monkeypatch, fresh_registry, select: str, expected: set[str]) -> None:
    monkeypatch.setenv("COLLAGEKIT_LOAD_PLUGINS", select)
    assert set(fresh_registry().pm.info) == expected


def test_unknown_names_list_choices_and_suggest(fresh_registry) -> None:
    registry = fresh_registry()
    with pytest.raises(CollagekitError, match=r"unknown solver 'andersen'; choose from: anderson, picard \(did you mean 'anderson'\?\)"):
        registry.get("solver", "andersen")


def test_cli_survives_a_broken_plugin_with_one_warning_line(tmp_path) -> None:
    root = make_distribution(tmp_path / "site", "collagekit-broken", "0.0.1", {"broken": "collagekit_broken"}, BROKEN)
    result = run_cli("plugins", env={"PYTHONPATH": _path(root)})
    assert result.returncode == 0, result.stderr
    warning_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warning_lines) == 1
    assert re.match(r"warning: plugin 'broken' \(collagekit-broken 0\.0\.1\) failed to load", warning_lines[0])
    assert "broken" in result.stdout and "image" in result.stdout


def test_every_hook_is_a_registry_kind_or_the_command_hook() -> None:
    hooks = {name for name in dir(hookspecs) if name.startswith("register_")}
    assert hooks == set(KINDS.values()) | {"register_commands"}


def test_every_hook_is_documented() -> None:
    text = DOCS.read_text()
    for name in dir(hookspecs):
        if name.startswith("register_"):
            assert name in text, f"{name} is not documented in docs/plugins.md"


def test_plugin_entry_modules_import_nothing_heavy() -> None:
    """Importing a plugin's entry module must not import torch (checked in a clean interpreter)."""
    import subprocess
    import sys

    code = "import sys, collagekit_image.plugin; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


COMMAND_PLUGIN = {
    "collagekit_hello.py": '''
from collagekit.hookspecs import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command()
    def hello(name: str = "collage") -> None:
        """Say hello (a sub-command added by a plugin)."""
        print(f"hello, {name}")
'''
}


def test_register_commands_adds_a_sub_command(tmp_path) -> None:
    root = make_distribution(tmp_path / "site", "collagekit-hello", "1.2.3", {"hello": "collagekit_hello"}, COMMAND_PLUGIN)
    result = run_cli("hello", "--name", "fern", env={"PYTHONPATH": _path(root), "COLLAGEKIT_STRICT_PLUGINS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello, fern"
    listed = run_cli("--help", env={"PYTHONPATH": _path(root)})
    assert "hello" in listed.stdout


def test_every_registry_hook_is_implemented_by_a_first_party_plugin(fresh_registry) -> None:
    """Every register_* hook except register_commands (tested above) is exercised by shipped code."""
    registry = fresh_registry()
    for kind in KINDS:
        assert registry.entries(kind), f"no shipped plugin registers a {kind}"
