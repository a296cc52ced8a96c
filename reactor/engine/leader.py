"""Leader election: a session advisory lock held on a connection of its own.

Any number of reactors may run against one database; the one holding the lock acts, the
others wait and retry every second. Losing the lock connection raises LeadershipLost at
once, which stops every action of the leader.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import asyncpg

from reactor.aio import wait_event
from reactor.db.errors import TRANSIENT_DB_ERRORS
from reactor.db.queries import query
from reactor.errors import ReactorError

log = logging.getLogger(__name__)


class LeadershipLost(ReactorError):
    """The connection holding the leader lock is gone; stop acting now."""


def lock_key(fleet: str) -> int:
    digest = hashlib.sha256(f"gpu-reactor:leader:{fleet}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leadership:
    def __init__(
        self, *, dsn: str, fleet: str, check_interval: float = 2.0, retry_interval: float = 1.0
    ) -> None:
        self.dsn = dsn
        self.key = lock_key(fleet)
        self.check_interval = check_interval
        self.retry_interval = retry_interval
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._lost.is_set()

    async def try_acquire(self) -> bool:
        try:
            conn = await asyncpg.connect(
                self.dsn,
                timeout=10,
                server_settings={
                    "application_name": "gpu-reactor-leader",
                    "tcp_keepalives_idle": "5",
                    "tcp_keepalives_interval": "2",
                    "tcp_keepalives_count": "3",
                },
            )
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("leader_connect_failed", extra={"error": str(exc)[:200]})
            return False
        try:
            got = await conn.fetchval(query("leader_try_lock"), self.key)
        except TRANSIENT_DB_ERRORS:
            got = False
        if not got:
            conn.terminate()
            return False
        self._lost.clear()
        conn.add_termination_listener(lambda _c: self._lost.set())
        self._conn = conn
        return True

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this process leads (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            if await self.try_acquire():
                return True
            await wait_event(stop, self.retry_interval)
        return False

    async def watch(self) -> None:
        """Return never; raise LeadershipLost as soon as the lock connection fails."""
        assert self._conn is not None
        while True:
            if await wait_event(self._lost, self.check_interval):
                raise LeadershipLost("leader lock connection closed")
            try:
                async with asyncio.timeout(self.check_interval * 2):
                    await self._conn.fetchval("SELECT 1")
            except TRANSIENT_DB_ERRORS as exc:
                raise LeadershipLost(f"leader lock connection failed: {exc}") from exc

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            async with asyncio.timeout(2):
                await conn.fetchval(query("leader_unlock"), self.key)
            async with asyncio.timeout(2):
                await conn.close()
        except TRANSIENT_DB_ERRORS:
            conn.terminate()
