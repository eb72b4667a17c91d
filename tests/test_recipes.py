"""Recipes: every shipped recipe validates; malformed ones fail with ``file:line: dotted.path: message``."""

from __future__ import annotations

from pathlib import Path

import pytest

from collagekit.errors import CollagekitError
from collagekit.recipe import apply_override, load_recipe, parse_override, recipe_schema
from collagekit.registry import get_registry

RECIPES = sorted((Path(__file__).resolve().parents[1] / "collagekit" / "recipes").glob("*.yaml"))


def test_there_are_recipes() -> None:
    assert RECIPES, "recipes/ holds no YAML recipe"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path: Path) -> None:
    recipe = load_recipe(path, get_registry())
    assert recipe.config.task


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def _error(path: Path, overrides: list[str] = ()) -> str:
    with pytest.raises(CollagekitError) as info:
        load_recipe(path, get_registry(), list(overrides))
    return str(info.value)


GOOD = """\
task: image_fractalize
output: out.png
collage:
  partitioner:
    name: tiles2d
    range_size: 8
    domain_size: full
  auxiliary:
    - name: dihedral
encoder:
  name: fit
  steps: 10
"""


def test_bad_value_points_at_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("range_size: 8", "range_size: -3"))
    message = _error(path)
    assert message.startswith(f"{path}:6: collage.partitioner.range_size: ")
    assert "\n" not in message


def test_unknown_component_lists_choices_and_suggests(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("name: dihedral", "name: dihedrl"))
    message = _error(path)
    assert message.startswith(f"{path}:9: collage.auxiliary.0.name: unknown auxiliary 'dihedrl'")
    assert "dihedral, learned" in message and "did you mean 'dihedral'" in message


def test_unknown_partitioner_with_a_single_choice(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("name: tiles2d", "name: tile2d"))
    message = _error(path)
    assert message.startswith(f"{path}:5: collage.partitioner.name: unknown partitioner 'tile2d'")
    assert "\n" not in message  # the partitioner's other fields are not reported as extra inputs
    assert "did you mean 'tiles2d'" in message


def test_missing_component_name(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("    name: tiles2d\n", ""))
    assert f"{path}:4: collage.partitioner: missing name" in _error(path)


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("  steps: 10", "  stepz: 10"))
    assert f"{path}:12: encoder.stepz: Extra inputs are not permitted" in _error(path)


def test_unknown_task_suggests(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("task: image_fractalize", "task: image_fractalise"))
    message = _error(path)
    assert message.startswith(f"{path}:1: task: unknown task 'image_fractalise'")
    assert "did you mean 'image_fractalize'" in message


def test_invalid_yaml_and_non_mapping(tmp_path: Path) -> None:
    assert _error(_write(tmp_path, "task: [unclosed\n")).startswith(f"{tmp_path / 'recipe.yaml'}:2: invalid YAML")
    assert "must be a mapping" in _error(_write(tmp_path, "- a\n- b\n"))


def test_missing_recipe_file(tmp_path: Path) -> None:
    assert "does not exist" in _error(tmp_path / "nope.yaml")


def test_several_errors_share_one_line(tmp_path: Path) -> None:
    text = GOOD.replace("range_size: 8", "range_size: abc").replace("  steps: 10", "  steps: -1")
    message = _error(_write(tmp_path, text))
    assert "\n" not in message
    assert [problem.split(": ")[1] for problem in message.split("; ")] == ["collage.partitioner.range_size", "encoder.steps"]
    many = text + "scale: 0\nmax_elements: -1\nseed: -3\n"
    message = _error(_write(tmp_path, many))
    assert "\n" not in message and message.endswith("(and 2 more)"), message


def test_overrides_apply_and_errors_name_the_override(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    recipe = load_recipe(path, get_registry(), ["encoder.steps=7", "scale=3", "collage.partitioner.range_size=[4, 4]"])
    assert recipe.config.encoder.steps == 7
    assert recipe.config.scale == 3
    assert recipe.config.collage.partitioner.range_size == (4, 4)
    message = _error(path, ["encoder.steps=many"])
    assert message.startswith("command-line override: encoder.steps: ")


def test_override_parsing() -> None:
    assert parse_override("a.b.0.c=1.5") == (["a", "b", 0, "c"], 1.5)
    assert parse_override("name=full") == (["name"], "full")
    with pytest.raises(CollagekitError, match="key=value"):
        parse_override("no-equals-sign")
    data = {"aux": [{"name": "learned"}]}
    apply_override(data, ["aux", 0, "count"], 3)
    apply_override(data, ["aux", 1], {"name": "dihedral"})
    assert data == {"aux": [{"name": "learned", "count": 3}, {"name": "dihedral"}]}


def test_defaults_are_validated_components() -> None:
    """A recipe naming only the task gets the task's default components, as real Config objects."""
    from collagekit.recipe import validate_data

    config = validate_data({"task": "image_fractalize"}, get_registry())
    assert config.collage.partitioner.name == "tiles2d"
    assert config.collage.partitioner.domain_size == "full"
    assert [a.name for a in config.collage.auxiliary] == ["dihedral"]
    assert config.solver.name == "anderson"


def test_schema_is_discriminated_by_component_name() -> None:
    schema = recipe_schema(get_registry())
    text = str(schema)
    for name in ("tiles2d", "dihedral", "learned", "anderson", "picard", "image_fractalize"):
        assert name in text
    assert "discriminator" in text


def test_only_a_components_name_switches_components(tmp_path: Path) -> None:
    """``name`` outside a component is a plain field: overriding it must not wipe its parent."""
    path = _write(tmp_path, GOOD)
    assert "name: Extra inputs are not permitted" in _error(path, ["name=full"])
    recipe = load_recipe(path, get_registry(), ["solver.name=picard"])
    assert recipe.config.solver.name == "picard"
    assert recipe.config.encoder.steps == 10  # the rest of the recipe is intact


def test_numbers_are_accepted_as_text() -> None:
    """YAML reads ``version: 1`` as a number; a text field takes it as its text."""
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "collagekit" / "recipes" / "image_train.yaml", get_registry(), ["model_version=2"])
    assert recipe.config.model_version == "2"


@pytest.mark.parametrize("name", ["image_train", "audio_train"])
def test_out_dir_moves_the_training_export(name: str) -> None:
    from collagekit.recipes import find

    config = load_recipe(find(name), get_registry(), ["out_dir=elsewhere/run"]).config
    assert config.export_path == Path("elsewhere/run/model.safetensors")
    config = load_recipe(find(name), get_registry(), ["out_dir=elsewhere/run", "export=mine.safetensors"]).config
    assert config.export_path == Path("mine.safetensors")
