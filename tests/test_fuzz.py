"""The fuzz suite in CI: a fixed (derandomised) set of hostile inputs per class, from tests/fuzzing.py,
run in one child process so that its memory is measured apart from pytest's.

Each class must end every example cleanly (a readable output, or one ``error:`` line), leave no file
behind, finish each example in time and stay within the memory budget. The longer run that writes
docs/results/fuzz.md is ``python tests/fuzzing.py --examples 400 --out docs/results``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzzing import CLASSES, LIMIT_MIB, SLACK_MIB, Outcome, check_outcome, run_in_child

EXAMPLES = 50  # per class: under a minute in all on a shared 2-core machine


@pytest.fixture(scope="module")
def fuzzed() -> dict:
    return run_in_child(list(CLASSES), EXAMPLES, seed=None, timeout=600)


@pytest.mark.parametrize("name", CLASSES)
def test_every_hostile_input_ends_cleanly(fuzzed: dict, name: str) -> None:
    result = fuzzed["classes"][name]
    assert result["failure"] is None, result["failure"]
    assert result["examples"] == EXAMPLES
    assert result["max_mib"] <= LIMIT_MIB + SLACK_MIB  # measured where /proc exists (Linux), else 0


def test_the_fuzzer_reaches_both_outcomes(fuzzed: dict) -> None:
    """Generators that only ever produced garbage (or only valid files) would prove little."""
    for name, result in fuzzed["classes"].items():
        assert result["outcomes"].get("refused", 0) > 0, name
    for name in ("codec:grid-collage", "degenerate:image", "degenerate:audio"):
        assert fuzzed["classes"][name]["outcomes"].get("ok", 0) > 0, name


@pytest.mark.parametrize(
    ("outcome", "files", "problem"),
    [
        (Outcome(1, "", "error: one\nerror: two\n", 0.1, 1.0), set(), "not one error line"),
        (Outcome(1, "", "Traceback (most recent call last):\n", 0.1, 1.0), set(), "not one error line"),
        (Outcome(1, "", "error: refused\n", 0.1, 1.0), {"out.png"}, "left"),
        (Outcome(0, "", "RPly: junk\n", 0.1, 1.0), set(), "status 0 but stderr"),
        (Outcome(1, "", "error: refused\n", 0.1, LIMIT_MIB + SLACK_MIB + 1.0), set(), "peak memory"),
        (Outcome(3, "", "error: refused\n", 0.1, 1.0), set(), "exit status 3"),
    ],
)
def test_the_property_catches_what_it_must(tmp_path: Path, outcome: Outcome, files: set[str], problem: str) -> None:
    for name in files:
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(AssertionError, match=problem):
        check_outcome(outcome, tmp_path, set())
