"""Task type patterns: a name, or a glob with ``*`` (any run) and ``?`` (one character).

The claim's rule in SQL (``gpu_reactor.like_patterns``, sql/schema.sql) said in Python:
``*`` matches any run of characters, none and newlines included, ``?`` exactly one, and
every other character is literal - the ``_`` of ``travel_orchestrator``, a ``%`` or a
backslash too. The whole type must match, case-sensitive; a task without a type matches
nothing. tests/db/test_globs_sql.py holds this and PostgreSQL to the same answers, and
worker/globs.py (the worker may not import the reactor) to this.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

MAX_PATTERN_LENGTH = 200
WILDCARDS = frozenset("*?")


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` matches more than the one name it spells."""
    return any(c in WILDCARDS for c in pattern)


def _regex(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


def _never(_task_type: str | None) -> bool:
    return False


@functools.lru_cache(maxsize=256)
def _compiled(patterns: tuple[str, ...]) -> Callable[[str | None], bool]:
    if not patterns:
        return _never
    matcher = re.compile("|".join(f"(?:{_regex(p)})" for p in patterns), re.DOTALL)

    def matches(task_type: str | None) -> bool:
        return task_type is not None and matcher.fullmatch(task_type) is not None

    return matches


def compile_globs(patterns: Sequence[str]) -> Callable[[str | None], bool]:
    """Whether a task type matches any of ``patterns`` (none: no type does)."""
    return _compiled(tuple(patterns))


def matches_any(patterns: Sequence[str], task_type: str | None) -> bool:
    return compile_globs(patterns)(task_type)


def validate_glob(pattern: str) -> str | None:
    """What is wrong with a pattern, in one line, or None.

    Besides the empty pattern: whitespace and control characters (no task type has them;
    PostgreSQL's text cannot hold a NUL at all), and a comma, which would split the
    pattern in two on its way to a pod (WORKER_TASK_TYPES is a comma-separated list).
    """
    if not pattern:
        return "is empty"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"is longer than {MAX_PATTERN_LENGTH} characters"
    if "\x00" in pattern:
        return "contains a NUL character"
    if any(c.isspace() for c in pattern):
        return "contains whitespace"
    if any(not c.isprintable() for c in pattern):
        return "contains a control character"
    if "," in pattern:
        return "contains a comma (task type lists are comma-separated)"
    return None
