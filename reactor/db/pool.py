"""The reactor's connection pool, made safe against connections that go half-open.

asyncpg returns a connection to its pool by resetting it, under ``asyncio.shield`` and
bounded only by ``command_timeout``; on a connection that stopped answering (a network
partition, a NAT that dropped the flow) a cancelled reconcile therefore waits that long
again before its cancellation takes effect. Here a connection whose statement timed
out, failed at the transport or was cancelled is terminated before it goes back, so the
pool replaces it instead of waiting on it; statements are bounded by a short
``command_timeout``; and ``expire`` drops every idle connection when the reactor has
other evidence that the network broke (the listener or the leader lock connection died).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from reactor.db.errors import CONNECTION_ERRORS

COMMAND_TIMEOUT = 10.0  # seconds: every reactor statement is small and index-backed
ACQUIRE_TIMEOUT = 10.0
RELEASE_TIMEOUT = 2.0
# The connection cannot be trusted after these: its state on the server is unknown.
BROKEN: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, asyncio.CancelledError)


async def create_pool(
    dsn: str,
    *,
    max_size: int = 8,
    application_name: str = "gpu-reactor",
    command_timeout: float = COMMAND_TIMEOUT,
) -> GuardedPool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        timeout=ACQUIRE_TIMEOUT,
        command_timeout=command_timeout,
        server_settings={"application_name": application_name},
    )
    return GuardedPool(pool)


class GuardedPool:
    """The subset of ``asyncpg.Pool`` the reactor uses, with the guards above."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.raw = pool

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await self.raw.acquire(timeout=ACQUIRE_TIMEOUT)
        try:
            yield conn
        except BROKEN:
            conn.terminate()
            raise
        finally:
            await self.raw.release(conn, timeout=RELEASE_TIMEOUT)

    async def execute(self, sql: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return await conn.execute(sql, *args)  # type: ignore[no-any-return]

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            return await conn.fetch(sql, *args)  # type: ignore[no-any-return]

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def expire(self) -> None:
        """Replace every connection at its next use (idle ones are closed in the background)."""
        await self.raw.expire_connections()

    async def close(self) -> None:
        try:
            async with asyncio.timeout(5):
                await self.raw.close()
        except TimeoutError:
            self.raw.terminate()

    def get_size(self) -> int:
        return self.raw.get_size()  # type: ignore[no-any-return]


def guarded(pool: asyncpg.Pool | GuardedPool) -> GuardedPool:
    return pool if isinstance(pool, GuardedPool) else GuardedPool(pool)
