"""What the doorbell costs an application's insert (sql/schema.sql, the doorbell).

Nobody waits most of the time, so the bell is disarmed for almost every insert. Then an
insert must only call the SECURITY INVOKER trigger function, which reads the bell:
gpu_reactor.ring (SECURITY DEFINER, with its own search_path switch) runs only when the
bell is armed. PostgreSQL's function statistics count the calls.
"""

from __future__ import annotations

import asyncpg
import pytest

from tests.db.support import Notifications, add_task, add_worker, claim

ARM = "SELECT gpu_reactor.arm()"
CALLS = "SELECT coalesce(pg_stat_get_xact_function_calls($1::regprocedure), 0)"
RING = "gpu_reactor.ring(text)"
ON_QUEUED = "gpu_reactor.on_tasks_queued()"
INSERTS = 20


@pytest.fixture
async def counted(conn: asyncpg.Connection) -> asyncpg.Connection:
    """``conn`` with function calls counted (track_functions needs a superuser)."""
    if not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        pytest.skip("SET track_functions needs a superuser")
    await conn.execute("SET track_functions = 'all'")
    return conn


async def _calls(conn: asyncpg.Connection, function: str) -> int:
    """Calls counted by this backend and not yet flushed to the shared statistics. No
    flush happens inside a transaction, so take differences within one."""
    return await conn.fetchval(CALLS, function)  # type: ignore[no-any-return]


async def _counts(conn: asyncpg.Connection, *functions: str) -> tuple[int, ...]:
    return tuple([await _calls(conn, f) for f in functions])


def _minus(after: tuple[int, ...], before: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(a - b for a, b in zip(after, before, strict=True))


async def test_inserts_on_a_disarmed_bell_read_it_and_call_nothing_more(
    counted: asyncpg.Connection, listener: Notifications
) -> None:
    await counted.execute(ARM)
    await add_task(counted)  # rings and disarms
    await listener.take(counted)
    async with counted.transaction():
        before = await _counts(counted, ON_QUEUED, RING)
        for _ in range(INSERTS):
            await add_task(counted)
        assert _minus(await _counts(counted, ON_QUEUED, RING), before) == (INSERTS, 0)
    assert await listener.take(counted) == []


async def test_an_armed_bell_is_rung_once_by_the_first_insert(
    counted: asyncpg.Connection, listener: Notifications
) -> None:
    await counted.execute(ARM)
    await listener.take(counted)
    async with counted.transaction():
        before = await _counts(counted, ON_QUEUED, RING)
        for _ in range(INSERTS):
            await add_task(counted)
        assert _minus(await _counts(counted, ON_QUEUED, RING), before) == (INSERTS, 1)
    assert await listener.take(counted) == [{"event": "task_queued"}]
    assert await counted.fetchval("SELECT armed FROM gpu_reactor.doorbell") is False


async def test_a_requeue_rings_only_an_armed_bell(
    counted: asyncpg.Connection, listener: Notifications
) -> None:
    await add_worker(counted, "w1")
    first, second = await add_task(counted), await add_task(counted)
    await claim(counted, "w1")
    await claim(counted, "w1")
    await counted.execute("UPDATE gpu_reactor.doorbell SET armed = false")
    await listener.take(counted)
    requeue = "UPDATE public.tasks SET status = 'Queued', worker_id = NULL WHERE id = $1"
    async with counted.transaction():
        before = await _counts(counted, ON_QUEUED, RING)
        await counted.execute(requeue, first)
        assert _minus(await _counts(counted, ON_QUEUED, RING), before) == (1, 0)
    await counted.execute(ARM)
    async with counted.transaction():
        before = await _counts(counted, ON_QUEUED, RING)
        await counted.execute(requeue, second)
        assert _minus(await _counts(counted, ON_QUEUED, RING), before) == (1, 1)
    events = [e["event"] for e in await listener.take(counted)]
    assert events.count("task_queued") == 1
