"""Task type patterns: a name, or a glob with ``*`` (any run) and ``?`` (one character).

The same rule as the claim's in SQL (gpu_reactor.like_patterns): every other character
is literal, the whole type must match, case-sensitive; a task without a type matches
nothing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

MAX_PATTERN_LENGTH = 200


def is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def _regex(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


@functools.lru_cache(maxsize=256)
def _compiled(patterns: tuple[str, ...]) -> Callable[[str | None], bool]:
    if not patterns:
        return lambda _task_type: False
    matcher = re.compile("|".join(f"(?:{_regex(p)})" for p in patterns), re.DOTALL)

    def matches(task_type: str | None) -> bool:
        return task_type is not None and matcher.fullmatch(task_type) is not None

    return matches


def compile_globs(patterns: Sequence[str]) -> Callable[[str | None], bool]:
    """Whether a task type matches any of ``patterns``."""
    return _compiled(tuple(patterns))


def matches_any(patterns: Sequence[str], task_type: str | None) -> bool:
    return compile_globs(patterns)(task_type)


def validate_glob(pattern: str) -> str | None:
    """What is wrong with a pattern, in one line, or None."""
    if not pattern.strip():
        return "is empty"
    if pattern != pattern.strip():
        return "has leading or trailing spaces"
    if "\x00" in pattern:
        return "contains a NUL character"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"is longer than {MAX_PATTERN_LENGTH} characters"
    return None
