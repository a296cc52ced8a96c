"""LISTEN gpu_reactor on its own connection: wake the claim loop when work may be there.

A notification is only a hint; the claim loop polls anyway every POLL_INTERVAL_SEC, so a
lost one costs seconds. ``task_queued`` (and anything unknown) wakes the claim loop; a
status change of this worker pokes the heartbeat, whose answer is the truth. The
connection is pinged every ``check_interval`` and re-opened with capped backoff when lost;
every (re)connect wakes the claim loop for whatever was missed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg
import orjson

from worker import queries
from worker.db import TRANSIENT, Link, backoff_delays, describe
from worker.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

NOT_WORK = frozenset({"task_finished", "worker_status", "worker_drained", "sweep", "drain"})
FIRST_DELAY = 0.2


def classify(payload: str, worker_id: str) -> str:
    """'status' (about this worker), 'ignore', or 'work' (maybe something to claim)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "work"
    if not isinstance(body, dict):
        return "work"
    event = body.get("event")
    if event in ("worker_status", "drain") and body.get("worker_id") == worker_id:
        return "status"
    return "ignore" if event in NOT_WORK else "work"


class Listener:
    def __init__(
        self,
        *,
        link: Link,
        worker_id: str,
        on_work: Callable[[], None],
        on_status: Callable[[], None],
        check_interval: float,
        cap: float,
    ) -> None:
        self.link = link
        self.worker_id = worker_id
        self.on_work = on_work
        self.on_status = on_status
        self.check_interval = check_interval
        self.cap = cap

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        kind = classify(payload, self.worker_id)
        if kind == "status":
            self.on_status()
        elif kind == "work":
            self.on_work()

    async def _listen(self) -> tuple[asyncpg.Connection, asyncio.Event]:
        conn = await self.link.connection()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        try:
            await conn.add_listener(queries.CHANNEL, self._notified)
        except TRANSIENT as exc:
            self.link.reset()
            raise DatabaseUnavailable(f"LISTEN failed: {describe(exc)}") from exc
        return conn, lost

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Event) -> str:
        """Return why the connection is considered lost."""
        while True:
            try:
                async with asyncio.timeout(self.check_interval):
                    await lost.wait()
                return "connection closed"
            except TimeoutError:
                pass
            try:
                await conn.fetchval(queries.PING, timeout=min(self.check_interval, 10))
            except TRANSIENT as exc:
                return f"ping failed: {describe(exc)}"

    async def run(self) -> None:
        """Keep a LISTEN connection until cancelled."""
        delays = backoff_delays(FIRST_DELAY, self.cap)
        while True:
            try:
                conn, lost = await self._listen()
            except DatabaseUnavailable as exc:
                delay = next(delays)
                log.warning(
                    "listener_connect_failed",
                    extra={"error": str(exc), "retry_in": round(delay, 2)},
                )
                await asyncio.sleep(delay)
                continue
            delays = backoff_delays(FIRST_DELAY, self.cap)
            log.info("listener_connected", extra={"channel": queries.CHANNEL})
            self.on_work()  # whatever was queued while we were not listening
            why = await self._watch(conn, lost)
            self.link.reset()
            log.warning("listener_lost", extra={"reason": why})
