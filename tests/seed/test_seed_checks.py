"""`gpu-reactor check` on the seed's database: what is in the way, each with its fix
(reactor/ops/checks_shared.py), before and after migrate, and the verdicts as a table."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from reactor.ops.checks_shared import TASK_WRITERS, check_shared, judge
from reactor.settings import Settings
from tests.pg import PgServer


def _settings(protocol: str = "headless-wan2gp") -> Settings:
    return Settings(_env_file=None, WORKER_PROTOCOL=protocol)  # type: ignore[call-arg]


def _verdicts(results: list[Any]) -> dict[str, str]:
    return {r.name: r.verdict for r in results}


async def test_on_the_seed_before_migrate_it_names_the_check_and_instance_type(
    seed: asyncpg.Connection,
) -> None:
    results = {r.name: r for r in await check_shared(seed, _settings())}
    assert _verdicts(list(results.values())) == {
        "workers-status": "FAIL",
        "workers-instance-type": "FAIL",
        "row-level-security": "PASS",  # the test login is a superuser
        "timing-trigger": "FAIL",  # gpu-reactor's functions are not there yet
        "count-function": "PASS",
    }
    assert "spawning, terminating, error, crashed" in results["workers-status"].detail
    for name in ("workers-status", "workers-instance-type", "timing-trigger"):
        assert "fix: gpu-reactor migrate" in results[name].detail


async def test_after_migrate_every_check_passes(migrated_seed: asyncpg.Connection) -> None:
    results = await check_shared(migrated_seed, _settings())
    assert set(_verdicts(results).values()) == {"PASS"}, results
    assert "count-function" not in _verdicts(
        await check_shared(migrated_seed, _settings("gpu-worker"))
    )


@pytest.fixture
async def plain_login(pg_server: PgServer, migrated_seed_name: str) -> AsyncIterator[str]:
    """A login that is neither owner, superuser nor BYPASSRLS, on the migrated seed."""
    name = f"plain_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(pg_server.dsn(migrated_seed_name))
    await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'pw'")
    yield pg_server.dsn(migrated_seed_name, user=name, password="pw")
    await admin.execute(f"DROP OWNED BY {name}; DROP ROLE {name}")
    await admin.close()


async def test_row_level_security_in_the_way_of_the_login_is_named_with_its_fix(
    plain_login: str,
) -> None:
    conn = await asyncpg.connect(plain_login)
    try:
        [rls] = [r for r in await check_shared(conn, _settings()) if r.name == "row-level-security"]
    finally:
        await conn.close()
    assert rls.verdict == "FAIL"
    assert "tasks, workers" in rls.detail and "BYPASSRLS" in rls.detail


FACTS: dict[str, Any] = dict(
    login="reactor",
    bypasses_rls=False,
    status_check=None,
    instance_type_blocks=False,
    rls_in_the_way=[],
    timing_trigger=False,
    writers_with_claim=list(TASK_WRITERS),
    count_function=True,
)


@pytest.mark.parametrize(
    ("facts", "name", "verdict"),
    [
        ({}, "workers-status", "PASS"),
        (
            {"status_check": "CHECK ((status = ANY (ARRAY['active'::text, 'inactive'::text])))"},
            "workers-status",
            "FAIL",
        ),
        ({"status_check": "CHECK ((length(status) < 20))"}, "workers-status", "WARN"),
        ({"instance_type_blocks": True}, "workers-instance-type", "FAIL"),
        ({"rls_in_the_way": ["tasks"]}, "row-level-security", "FAIL"),
        ({"rls_in_the_way": ["tasks"], "bypasses_rls": True}, "row-level-security", "PASS"),
        ({"timing_trigger": True}, "timing-trigger", "PASS"),
        (
            {"timing_trigger": True, "writers_with_claim": list(TASK_WRITERS)[1:]},
            "timing-trigger",
            "FAIL",
        ),
        ({"count_function": False}, "count-function", "WARN"),
    ],
)
def test_each_verdict(facts: dict[str, Any], name: str, verdict: str) -> None:
    results = judge({**FACTS, **facts}, _settings())
    assert _verdicts(results)[name] == verdict


async def test_with_pools_file_the_count_function_is_not_used_and_check_warns_so(
    migrated_seed: asyncpg.Connection,
) -> None:
    """With POOLS_FILE demand is gpu-reactor's claimable count by task type, not the seed's
    count: tasks the seed's claim never gives a GPU worker (run_type api, a user without
    credits) are demand in the pools that list their types, and rent GPUs for good."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        WORKER_PROTOCOL="headless-wan2gp",
        POOLS_FILE="pools.toml",
    )
    [count] = [r for r in await check_shared(migrated_seed, settings) if r.name == "count-function"]
    assert count.verdict == "WARN"
    assert "POOLS_FILE" in count.detail and "run_type api" in count.detail
    assert "credits" in count.detail and "\n" not in count.detail
