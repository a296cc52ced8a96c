"""The LISTEN connection: its own asyncpg connection, probed, reconnected.

Health: every LISTENER_CHECK_INTERVAL_SEC a NOTIFY is sent on a private probe channel from
*another* connection; if the listener does not receive it within the same interval, the
connection is declared dead (a half-open TCP connection looks healthy otherwise), closed
and re-opened with capped backoff. After every (re)connect, LISTEN comes first and then
``on_connected`` is called so the reactor runs a full reconcile for whatever it missed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

import asyncpg

from reactor.aio import wait_event
from reactor.db.errors import TRANSIENT_DB_ERRORS
from reactor.domain.events import CHANNEL
from reactor.engine.metrics import Metrics
from reactor.engine.state import ListenerHealth

log = logging.getLogger(__name__)

MAX_RECONNECT_DELAY = 10.0


class Listener:
    def __init__(
        self,
        *,
        dsn: str,
        on_payload: Callable[[str, int], None],
        on_connected: Callable[[], None],
        probe: Callable[[str], Awaitable[None]],
        health: ListenerHealth,
        metrics: Metrics,
        check_interval: float,
    ) -> None:
        self.dsn = dsn
        self.on_payload = on_payload
        self.on_connected = on_connected
        self.probe = probe
        self.health = health
        self.metrics = metrics
        self.check_interval = check_interval
        self.probe_channel = f"gpu_reactor_probe_{secrets.token_hex(4)}"
        self._conn: asyncpg.Connection | None = None
        self._probe_seen = asyncio.Event()
        self._lost = asyncio.Event()

    def _notified(self, _conn: object, pid: int, channel: str, payload: str) -> None:
        if channel == self.probe_channel:
            self._probe_seen.set()
            return
        self.health.last_event_at = time.time()
        self.on_payload(payload, pid)

    def _terminated(self, _conn: object) -> None:
        self._lost.set()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(
            self.dsn,
            timeout=10,
            server_settings={
                "application_name": "gpu-reactor-listener",
                "tcp_keepalives_idle": "5",
                "tcp_keepalives_interval": "2",
                "tcp_keepalives_count": "3",
            },
        )
        conn.add_termination_listener(self._terminated)
        await conn.add_listener(self.probe_channel, self._notified)
        await conn.add_listener(CHANNEL, self._notified)
        self._conn = conn
        self._lost.clear()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # never wait on a connection that may be half-open

    async def _healthy_probe(self) -> bool:
        self._probe_seen.clear()

        async def round_trip() -> None:
            await self.probe(self.probe_channel)
            await self._probe_seen.wait()

        try:  # one budget for send + receive: a dead listener is known within 2 intervals
            async with asyncio.timeout(self.check_interval):
                await round_trip()
        except TRANSIENT_DB_ERRORS:
            return False
        self.health.last_probe_ok_at = time.time()
        return True

    async def _watch(self) -> str:
        """Return why the connection is considered lost."""
        while True:
            if await wait_event(self._lost, self.check_interval):
                return "connection closed"
            if not await self._healthy_probe():
                if self._lost.is_set():
                    return "connection closed"
                return "probe not received"

    async def run(self) -> None:
        """Keep a healthy LISTEN connection until cancelled."""
        delay = 0.2
        while True:
            try:
                await self._connect()
            except TRANSIENT_DB_ERRORS as exc:
                self.health.connected = False
                self.health.last_error = str(exc)[:200]
                self.metrics.listener_up.set(0)
                log.warning(
                    "listener_connect_failed",
                    extra={"error": str(exc)[:200], "retry_in": round(delay, 2)},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)
                continue
            delay = 0.2
            if self.health.since is not None:  # connected before (maybe by an earlier leader term)
                self.health.reconnects += 1
                self.metrics.listener_reconnects.inc()
            self.health.connected, self.health.since = True, time.time()
            self.metrics.listener_up.set(1)
            log.info("listener_connected", extra={"channel": CHANNEL})
            self.on_connected()
            try:
                why = await self._watch()
            finally:
                # Lost, or the leadership term that ran it ended: nothing listens now
                # (a standby must not show a connected listener).
                self.health.connected = False
                self.metrics.listener_up.set(0)
                await self._close()
            self.health.last_error = why
            log.warning("listener_lost", extra={"reason": why})
