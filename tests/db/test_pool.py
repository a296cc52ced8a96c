"""The reactor's pool never waits on a connection it gave up on."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from reactor.db.pool import create_pool
from tests.util import wait_until


async def _backends(conn: asyncpg.Connection) -> set[int]:
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity "
        "WHERE application_name = 'pool-test' AND pid <> pg_backend_pid()"
    )
    return {r["pid"] for r in rows}


async def test_a_timed_out_statement_terminates_its_connection(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    pool = await create_pool(db_dsn, application_name="pool-test", command_timeout=0.2)
    try:
        first = await pool.fetchval("SELECT pg_backend_pid()")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await pool.execute("SELECT pg_sleep(30)")
        # Released at once, not after a reset bounded by command_timeout.
        assert time.monotonic() - started < 2
        second = await pool.fetchval("SELECT pg_backend_pid()")
        assert second != first, "the timed-out connection went back into the pool"
    finally:
        await pool.close()


async def test_a_cancelled_statement_does_not_hold_up_the_canceller(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    pool = await create_pool(db_dsn, application_name="pool-test")
    try:
        first = await pool.fetchval("SELECT pg_backend_pid()")
        task = asyncio.create_task(pool.execute("SELECT pg_sleep(30)"))
        await wait_until(
            lambda: conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pool-test' "
                "AND state = 'active' AND query LIKE 'SELECT pg_sleep%'"
            ),
            what="the statement running",
        )
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 2
        assert await pool.fetchval("SELECT pg_backend_pid()") != first
    finally:
        await pool.close()


async def test_expire_replaces_idle_connections(db_dsn: str, conn: asyncpg.Connection) -> None:
    pool = await create_pool(db_dsn, application_name="pool-test")
    try:
        first = await pool.fetchval("SELECT pg_backend_pid()")
        assert await pool.fetchval("SELECT pg_backend_pid()") == first  # reused while fresh
        await pool.expire()
        assert await pool.fetchval("SELECT pg_backend_pid()") != first
    finally:
        await pool.close()
    assert first not in await _backends(conn)
