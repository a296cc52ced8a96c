"""The doorbell must never fail, or hold up, an application's insert."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.db.support import Notifications, close_all, connect_many
from tests.pg import PgServer

ARM = "SELECT gpu_reactor.arm()"
INSERT = "INSERT INTO tasks (task_type, params) VALUES ('render', '{}')"
# Far longer than any insert takes here; only an insert stuck on a lock comes close.
NO_WAIT = 5.0
INSERTERS = 8
ROUNDS = 15


@pytest.fixture
async def app_dsn(
    pg_server: PgServer, db_name: str, conn: asyncpg.Connection
) -> AsyncIterator[str]:
    """A login that is not the owner and may only INSERT into tasks."""
    role = f"app_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    await conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    await conn.execute(f"GRANT INSERT ON tasks TO {role}")
    yield pg_server.dsn(db_name, user=role, password=password)
    await conn.execute(f"DROP OWNED BY {role}")
    await conn.execute(f"DROP ROLE {role}")


async def test_an_insert_only_role_inserts_while_the_bell_is_armed(
    conn: asyncpg.Connection, app_dsn: str, listener: Notifications
) -> None:
    app = await asyncpg.connect(app_dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.fetchval("SELECT count(*) FROM tasks")
        await conn.execute(ARM)
        await app.execute(INSERT)
        await app.execute("INSERT INTO tasks (task_type) SELECT 'bulk' FROM generate_series(1, 50)")
        assert await listener.take(app) == [{"event": "task_queued"}]
    finally:
        await app.close()
    assert await conn.fetchval("SELECT count(*) FROM tasks") == 51


async def test_an_open_ringing_transaction_does_not_hold_up_other_inserts(
    conn: asyncpg.Connection, db_dsn: str, listener: Notifications
) -> None:
    # An application transaction inserts while the bell is armed, rings, and stays open
    # (doing its own slow work). Other applications' inserts must not queue behind it.
    slow, other = await connect_many(db_dsn, 2)
    try:
        await conn.execute(ARM)
        tx = slow.transaction()
        await tx.start()
        await slow.execute(INSERT)
        await asyncio.wait_for(other.execute(INSERT), NO_WAIT)
        await asyncio.wait_for(conn.execute(ARM), NO_WAIT)
        await tx.commit()
        assert await listener.take(slow) == [{"event": "task_queued"}]
    finally:
        await close_all([slow, other])


async def _serializable_insert(
    conn: asyncpg.Connection, started: asyncio.Barrier, inserted: asyncio.Barrier
) -> None:
    async with conn.transaction(isolation="serializable"):
        await conn.fetchval("SELECT 1")  # take the snapshot before anyone rings
        await started.wait()
        await asyncio.wait_for(conn.execute(INSERT), NO_WAIT)
        await inserted.wait()


async def test_serializable_concurrent_inserters_never_fail(
    conn: asyncpg.Connection, db_dsn: str, app_dsn: str
) -> None:
    # Each round: arm, then 8 SERIALIZABLE transactions that all took their snapshot
    # before any of them rang, all insert, and only then commit. One of them rings; the
    # others read the armed bell too and must neither wait for it nor fail.
    inserters = await connect_many(app_dsn, INSERTERS)
    try:
        for _ in range(ROUNDS):
            await conn.execute(ARM)
            started, inserted = asyncio.Barrier(INSERTERS), asyncio.Barrier(INSERTERS)
            async with asyncio.TaskGroup() as group:  # one failure cancels the rest
                for c in inserters:
                    group.create_task(_serializable_insert(c, started, inserted))
        # And free-running: commits interleave with re-arming.
        armer = asyncio.create_task(_arm_repeatedly(db_dsn))
        try:
            async with asyncio.TaskGroup() as group:
                for c in inserters:
                    group.create_task(_insert_serializable_loop(c, 20))
        finally:
            armer.cancel()
            await asyncio.gather(armer, return_exceptions=True)
    finally:
        await close_all(inserters)
    assert await conn.fetchval("SELECT count(*) FROM tasks") == INSERTERS * (ROUNDS + 20)


async def _insert_serializable_loop(conn: asyncpg.Connection, count: int) -> None:
    for _ in range(count):
        async with conn.transaction(isolation="serializable"):
            await asyncio.wait_for(conn.execute(INSERT), NO_WAIT)


async def _arm_repeatedly(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            async with conn.transaction(isolation="serializable"):
                await conn.execute(ARM)
    finally:
        await conn.close()


@pytest.mark.parametrize("isolation", ["repeatable_read", "serializable"])
async def test_an_insert_whose_snapshot_saw_the_bell_armed_after_someone_rang(
    conn: asyncpg.Connection, app_dsn: str, listener: Notifications, isolation: str
) -> None:
    # The transaction's snapshot says armed; by the time it inserts, another has rung and
    # committed. Locking the changed row raises a serialization failure inside the bell:
    # it must be swallowed there, and the application's transaction must commit.
    late, early = await connect_many(app_dsn, 2)
    try:
        await conn.execute(ARM)
        async with late.transaction(isolation=isolation):
            await late.fetchval("SELECT 1")  # snapshot: the bell is armed
            await early.execute(INSERT)  # rings and disarms
            await late.execute(INSERT)
        assert await listener.take(late) == [{"event": "task_queued"}]
    finally:
        await close_all([late, early])
    assert await conn.fetchval("SELECT count(*) FROM tasks") == 2
