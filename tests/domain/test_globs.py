"""Task type globs (a pool's task_types, a worker's WORKER_TASK_TYPES): the claim's rule in
Python. Both copies - reactor/domain/globs.py and the worker's - answer every case."""

from __future__ import annotations

from types import ModuleType

import pytest

import worker.globs
from reactor.domain import globs

COPIES = pytest.mark.parametrize("impl", [globs, worker.globs], ids=["reactor", "worker"])


@COPIES
@pytest.mark.parametrize(
    ("patterns", "task_type", "expected"),
    [
        (["wan_2_1"], "wan_2_1", True),  # a plain name: exactly that name
        (["wan_2_1"], "wan_2_10", False),
        (["wan_2_1"], "wan-2-1", False),  # _ is literal, not LIKE's one character
        (["travel_orchestrator"], "travelXorchestrator", False),
        (["wan_*"], "wan_2_1", True),
        (["wan_*"], "wan_", True),  # * matches nothing too
        (["wan_*"], "wan", False),
        (["wan_*"], "wanx", False),
        (["wan_*"], "xwan_2", False),  # the whole type
        (["*_orchestrator"], "travel_orchestrator", True),
        (["*_orchestrator"], "travel_orchestrator_v2", False),
        (["*"], "anything at all", True),
        (["*"], "", True),
        (["*"], "two\nlines", True),  # * crosses newlines, as LIKE's %
        (["?"], "a", True),
        (["?"], "", False),
        (["?"], "ab", False),
        (["?"], "\n", True),
        (["flux_?"], "flux_x", True),
        (["flux_?"], "flux_xl", False),
        (["a%b"], "a%b", True),  # % is literal
        (["a%b"], "aXb", False),
        (["a\\b"], "a\\b", True),  # so is a backslash
        (["a\\*"], "a\\anything", True),  # and it escapes nothing
        (["a\\*"], "a*", False),
        (["Wan_*"], "wan_2_1", False),  # case-sensitive
        (["ünï_*"], "ünï_cödé", True),
        (["ü?"], "üé", True),  # ? is one character, not one byte
        (["flux_*", "wan_*"], "wan_2_1", True),  # any of the patterns
        (["flux_*", "wan_*"], "sdxl", False),
        ([], "wan_2_1", False),  # no pattern: no type
        (["*"], None, False),  # a task without a type: none
    ],
)
def test_a_task_type_matches_a_pattern_as_the_claim_does(
    impl: ModuleType, patterns: list[str], task_type: str | None, expected: bool
) -> None:
    assert impl.matches_any(patterns, task_type) is expected
    assert impl.compile_globs(patterns)(task_type) is expected


@COPIES
def test_compiled_patterns_are_cached(impl: ModuleType) -> None:
    assert impl.compile_globs(["wan_*", "flux"]) is impl.compile_globs(("wan_*", "flux"))


@COPIES
@pytest.mark.parametrize(
    ("pattern", "expected"),
    [("wan_2_1", False), ("a%b", False), ("a\\b", False), ("wan_*", True), ("flux_?", True)],
)
def test_is_glob(impl: ModuleType, pattern: str, expected: bool) -> None:
    assert impl.is_glob(pattern) is expected


@COPIES
@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("wan_*", None),
        ("*", None),
        ("travel_orchestrator", None),
        ("a%b\\c", None),
        ("x" * 200, None),
        ("", "is empty"),
        (" wan", "contains whitespace"),
        ("wan 2", "contains whitespace"),
        ("wan\n", "contains whitespace"),
        ("wan\x00", "contains a NUL character"),
        ("wan\x07", "contains a control character"),
        ("wan,flux", "contains a comma (task type lists are comma-separated)"),
        ("x" * 201, "is longer than 200 characters"),
    ],
)
def test_validate_glob_names_one_problem(
    impl: ModuleType, pattern: str, problem: str | None
) -> None:
    assert impl.validate_glob(pattern) == problem
