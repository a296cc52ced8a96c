"""The gpu_worker role: the worker functions and nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.db.support import Notifications, add_task, add_worker, task_row

DENIED = asyncpg.exceptions.InsufficientPrivilegeError


@pytest.fixture
async def pod(worker_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection with the credentials baked into a GPU pod."""
    connection = await asyncpg.connect(worker_dsn)
    yield connection
    await connection.close()


async def test_the_pod_login_is_only_a_gpu_worker(pod: asyncpg.Connection) -> None:
    assert await pod.fetchval("SELECT pg_has_role(current_user, 'gpu_worker', 'MEMBER')")
    assert not await pod.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")


async def test_a_worker_runs_its_whole_life_through_the_functions(
    conn: asyncpg.Connection, pod: asyncpg.Connection, listener: Notifications
) -> None:
    await add_worker(conn, "w1", "spawning")
    task = await add_task(conn, params='{"prompt": "x"}')

    assert await pod.fetchval("SELECT gpu_reactor.arm()") is None
    assert (
        await pod.fetchval(
            "SELECT gpu_reactor.func_update_worker_heartbeat('w1', '{\"vram\": 24}')"
        )
        == "active"
    )
    row = await pod.fetchrow("SELECT * FROM gpu_reactor.func_claim_available_task('w1', NULL)")
    assert row is not None and row["id"] == task and row["params"] == '{"prompt": "x"}'
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_mark_task_complete($1, '{}', 'w1', 1)", task)
        is True
    )

    second = await add_task(conn)
    assert (await pod.fetchrow("SELECT * FROM gpu_reactor.func_claim_available_task('w1')"))[
        "id"
    ] == second  # type: ignore[index]
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_mark_task_failed($1, 'oom', 'w1', 1)", second)
        is True
    )
    assert await pod.fetchval("SELECT gpu_reactor.func_report_worker_drained('w1')") is True
    assert (await task_row(conn, task))["status"] == "Complete"
    assert (await task_row(conn, second))["status"] == "Queued"
    await listener.settle(pod)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM workers",
        "SELECT params FROM tasks",
        "SELECT count(*) FROM tasks",
        "UPDATE tasks SET status = 'Complete'",
        "UPDATE workers SET status = 'active'",
        "INSERT INTO tasks (task_type) VALUES ('x')",
        "DELETE FROM tasks",
        "SELECT * FROM gpu_reactor.settings",
        "UPDATE gpu_reactor.doorbell SET armed = true",
        "SELECT * FROM gpu_reactor.migrations",
        "SELECT * FROM gpu_reactor.spawn_breaker",
        "SELECT * FROM gpu_reactor.orchestrator_status",
        "SELECT * FROM gpu_reactor.active_workers_health",
        "SELECT * FROM gpu_reactor.recent_task_activity",
        "SELECT * FROM gpu_reactor.worker_performance",
        "SELECT * FROM gpu_reactor.fleet_cost",
        "SELECT * FROM gpu_reactor.func_reset_orphaned_tasks(ARRAY['w1'])",
        "SELECT gpu_reactor.func_requeue_task(gen_random_uuid(), 'w1', 1, 'x')",
        "UPDATE gpu_reactor.doorbell SET armed = false",
        "SELECT gpu_reactor.drain('w1')",
    ],
)
async def test_everything_else_is_refused(
    conn: asyncpg.Connection, pod: asyncpg.Connection, sql: str
) -> None:
    await add_worker(conn, "w1")
    await add_task(conn)
    with pytest.raises(DENIED):
        await pod.execute(sql)


async def test_a_worker_completes_only_the_task_it_holds(
    conn: asyncpg.Connection, pod: asyncpg.Connection
) -> None:
    await add_worker(conn, "w1")
    await add_worker(conn, "w2")
    mine = await add_task(conn)
    theirs = await add_task(conn)
    assert (await pod.fetchrow("SELECT * FROM gpu_reactor.func_claim_available_task('w1')"))[
        "id"
    ] == mine  # type: ignore[index]
    assert (await pod.fetchrow("SELECT * FROM gpu_reactor.func_claim_available_task('w2')"))[
        "id"
    ] == theirs  # type: ignore[index]
    before = await task_row(conn, theirs)
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_mark_task_complete($1, '{}', 'w1', 1)", theirs)
        is False
    )
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_mark_task_failed($1, 'x', 'w1', 1)", theirs)
        is False
    )
    assert await task_row(conn, theirs) == before
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_mark_task_complete($1, '{}', 'w1', 1)", mine)
        is True
    )


async def test_temporary_tables_cannot_redirect_the_functions(
    conn: asyncpg.Connection, pod: asyncpg.Connection
) -> None:
    # Any role may create temporary tables, and an unqualified name resolves to the
    # session's temporary schema first unless the function's search_path puts pg_temp
    # last. A draining worker must not be able to fake 'active' and keep claiming.
    await add_worker(conn, "w1", "terminating")
    task = await add_task(conn)
    await pod.execute("CREATE TEMP TABLE workers (id text, status text)")
    await pod.execute("INSERT INTO workers VALUES ('w1', 'active')")
    await pod.execute("CREATE TEMP TABLE doorbell (id boolean, armed boolean)")
    await pod.execute("CREATE TEMP TABLE tasks (id uuid, status text)")
    assert await pod.fetchrow("SELECT * FROM gpu_reactor.func_claim_available_task('w1')") is None
    assert (await task_row(conn, task))["status"] == "Queued"
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_update_worker_heartbeat('w1', '{}')")
        == "terminating"
    )


async def test_every_security_definer_function_pins_its_search_path(
    conn: asyncpg.Connection,
) -> None:
    rows = await conn.fetch("""
        SELECT p.proname, p.proconfig
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'gpu_reactor' AND p.prosecdef
    """)
    assert rows, "no SECURITY DEFINER functions found"
    unsafe = {
        r["proname"]: r["proconfig"]
        for r in rows
        if not any(
            c.startswith("search_path=") and c.endswith("pg_temp") for c in r["proconfig"] or []
        )
    }
    assert unsafe == {}
