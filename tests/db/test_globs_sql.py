"""gpu_reactor.like_patterns() and the Python globs (the reactor's and the worker's copy) give
the same answer for any pattern and any task type: the claim and the pool routing agree."""

from __future__ import annotations

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import worker.globs
from reactor.domain import globs

# Every character that means something to a glob, to LIKE or to its escaping, and newline.
ALPHABET = st.sampled_from(["_", "%", "\\", "*", "?", "a", "b", "\n"])
MATCHES = "SELECT $1::text LIKE ANY (gpu_reactor.like_patterns($2::text[]))"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    patterns=st.lists(st.text(ALPHABET, max_size=6), min_size=1, max_size=3),
    task_type=st.text(ALPHABET, max_size=8),
)
@example(patterns=["a_b"], task_type="axb")
@example(patterns=["a%"], task_type="abc")
@example(patterns=["\\*"], task_type="\\")
@example(patterns=["a\\"], task_type="a\\")
@example(patterns=["*"], task_type="\n")
async def test_python_and_postgres_agree_on_every_glob(
    conn: asyncpg.Connection, patterns: list[str], task_type: str
) -> None:
    in_sql = await conn.fetchval(MATCHES, task_type, patterns)
    assert globs.matches_any(patterns, task_type) is in_sql
    assert worker.globs.matches_any(patterns, task_type) is in_sql


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["wan_2_1"], ["wan\\_2\\_1"]),
        (["wan_*", "flux_?"], ["wan\\_%", "flux\\__"]),
        (["100%"], ["100\\%"]),
        (["a\\b"], ["a\\\\b"]),
        (["*"], ["%"]),
        ([], []),
    ],
)
async def test_like_patterns_escapes_what_like_would_read(
    conn: asyncpg.Connection, patterns: list[str], expected: list[str]
) -> None:
    assert await conn.fetchval("SELECT gpu_reactor.like_patterns($1)", patterns) == expected


async def test_like_patterns_is_strict_immutable_and_anyone_may_call_it(
    conn: asyncpg.Connection,
) -> None:
    assert await conn.fetchval("SELECT gpu_reactor.like_patterns(NULL)") is None
    row = await conn.fetchrow(
        "SELECT provolatile::text, proisstrict, proparallel::text,"
        " has_function_privilege('public', oid, 'EXECUTE') AS public"
        " FROM pg_proc WHERE oid = 'gpu_reactor.like_patterns(text[])'::regprocedure"
    )
    assert dict(row) == {
        "provolatile": "i",  # immutable
        "proisstrict": True,
        "proparallel": "s",  # parallel safe
        "public": True,  # a pure helper of the claim rule, as dependencies()
    }


async def test_the_patterns_mean_the_same_without_standard_conforming_strings(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("SET standard_conforming_strings = off")
    assert await conn.fetchval("SELECT gpu_reactor.like_patterns($1)", ["a\\_*"]) == ["a\\\\\\_%"]
