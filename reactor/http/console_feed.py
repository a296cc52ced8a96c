"""One feed for every open console page: built once per change, sent to all of them.

The feed looks at the reactor's memory every ``POLL_SEC``; when something a page shows
has changed (a reconcile, a role or listener change, a new action) it builds the view
once (reactor/http/console_view.py) and wakes every page's event stream with the same
bytes. With nothing changing it still rebuilds every ``REFRESH_SEC`` so ages move on.

The only database reads are the console's totals (tasks finished in the last hour,
today's spend, the recent tasks and, on a standby, who holds the leader lock): every
``TOTALS_SEC`` while at least one page is open, however many are, or sooner after a
reconcile (a task arrived or finished) but never more than once per ``TOTALS_MIN_SEC``.
With no page open the feed does nothing at all. A build never takes more than about a tenth of the
reactor's time: after a build that took ``t``, the next waits at least ``10 t``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from reactor.aio import wait_any, wait_event
from reactor.db.errors import TRANSIENT_DB_ERRORS
from reactor.db.queries import query
from reactor.http.console_view import Totals, build_view
from reactor.ops import observe
from reactor.ops.status import build_status, scrub_secrets
from reactor.ops.status_pools import status_secrets

if TYPE_CHECKING:
    from reactor.engine.service import Reactor

log = logging.getLogger(__name__)

POLL_SEC = 0.25  # how often the reactor's memory is looked at for a change
REFRESH_SEC = 5.0  # a rebuild at least this often (ages, pauses that expire)
TOTALS_SEC = 5.0  # the console's own database read, while a page is open
TOTALS_MIN_SEC = 1.0  # ... sooner after a reconcile (a task came or went), never more often
TOTALS_TIMEOUT_SEC = 2.0
READ_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, TimeoutError)
RECENT_TASKS = 15
BUILD_SHARE = 0.1  # at most this share of the time goes to building views
HISTORY_TAIL = 12  # chart points each state event repeats (a page that missed some)


class ConsoleFeed:
    def __init__(
        self,
        reactor: Reactor,
        *,
        version: str,
        poll_sec: float = POLL_SEC,
        refresh_sec: float = REFRESH_SEC,
        totals_sec: float = TOTALS_SEC,
    ) -> None:
        self.reactor = reactor
        self.app_version = version
        self.poll_sec, self.refresh_sec, self.totals_sec = poll_sec, refresh_sec, totals_sec
        self.version = 0  # of the payload; 0 before the first build
        self.payload = b""
        self.subscribers = 0
        self.builds = 0  # views built (measured by the tests: one per change, not per page)
        self.totals_reads = 0
        self._published = asyncio.Event()
        self._wanted = asyncio.Event()
        self._totals: Totals | None = None
        self._totals_due = 0.0  # monotonic time of the next totals read
        self._totals_soonest = 0.0  # ... and the earliest one a reconcile may bring forward
        self._totals_reconciles = -1  # the reconcile count at the last totals read
        self._key: tuple[Any, ...] | None = None
        self._built_at = 0.0
        self._build_cost = 0.0
        self._previous_queued: int | None = None

    # --- pages ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def subscription(self) -> Iterator[None]:
        self.subscribers += 1
        self._wanted.set()
        try:
            yield
        finally:
            self.subscribers -= 1

    def current(self) -> tuple[int, bytes]:
        """The latest payload; built now if there is none yet (a page's first event)."""
        if not self.version:
            self.publish()
        return self.version, self.payload

    async def latest(self) -> bytes:
        """The latest payload for a one-off read (/console/state): with no page open the
        loop sleeps, so this brings the payload (and, at most every TOTALS_SEC, the
        totals) up to date itself."""
        if self.subscribers == 0:
            await self._tick(force=not self.version)
        return self.current()[1]

    async def wait_newer(self, version: int, timeout: float) -> bool:
        """Wait up to ``timeout`` for a payload newer than ``version``."""
        if self.version > version:
            return True
        await wait_event(self._published, timeout)
        return self.version > version

    def wake(self) -> None:
        """Wake every page's stream and the loop (the server is stopping)."""
        self._wanted.set()
        self._published.set()

    def history(self, last: int | None = None) -> bytes:
        wire = self.reactor.state.history.wire(time.time(), last=last)
        return orjson.dumps(wire)

    # --- building --------------------------------------------------------------------------
    def _change_key(self) -> tuple[Any, ...]:
        st = self.reactor.state
        last_action = st.actions[-1].at if st.actions else None
        lst = st.listener
        return (
            st.reconciles,
            st.role,
            st.db_ok,
            lst.connected,
            lst.reconnects,
            lst.last_error,
            last_action,
            st.last_error,
            self._totals.at if self._totals else None,
        )

    def publish(self) -> None:
        started = time.monotonic()
        reactor = self.reactor
        provider = getattr(reactor.provider, "name", None)
        status = build_status(reactor.state, reactor.settings, provider=provider)
        view = build_view(
            status,
            self._totals,
            reactor.settings,
            version=self.app_version,
            previous_queued=self._previous_queued,
        )
        view["history_tail"] = reactor.state.history.wire(time.time(), last=HISTORY_TAIL)
        if status.queue is not None:
            self._previous_queued = status.queue.queued
        secrets = status_secrets(reactor.state, reactor.settings)
        self.payload = scrub_secrets(orjson.dumps(view), secrets)
        self.version += 1
        self.builds += 1
        self._key = self._change_key()
        self._built_at = time.monotonic()
        self._build_cost = self._built_at - started
        published, self._published = self._published, asyncio.Event()
        published.set()

    def _build_due(self, now: float) -> bool:
        if now - self._built_at < self._build_cost / BUILD_SHARE:
            return False
        return self._key != self._change_key() or now - self._built_at >= self.refresh_sec

    # --- the console's own read ------------------------------------------------------------
    async def read_totals(self) -> None:
        pool = self.reactor.pool
        if pool is None:
            return
        settings = self.reactor.settings
        try:
            async with asyncio.timeout(TOTALS_TIMEOUT_SEC), pool.acquire() as conn:
                row = await conn.fetchrow(query("console_totals"))
                recent = await observe.recent_tasks(conn, RECENT_TASKS)
                standby = self.reactor.state.role != "leader"
                leader = (
                    await observe.leader_holder(conn, settings.reactor_fleet) if standby else None
                )
        except READ_ERRORS as exc:
            error = str(exc)[:200] or type(exc).__name__
            log.warning("console_read_failed", extra={"error": error})
            previous = self._totals or Totals(at=time.time())
            self._totals = Totals(**{**previous.__dict__, "at": time.time(), "error": error})
            return
        finally:
            self.totals_reads += 1
        assert row is not None
        self._totals = Totals(
            at=time.time(),
            complete=row["complete"],
            failed=row["failed"],
            cancelled=row["cancelled"],
            spent_today_usd=row["spent_today_usd"],
            recent=[_recent(r) for r in recent],
            leader=_leader(leader),
            leader_checked=standby,
        )

    # --- the loop --------------------------------------------------------------------------
    async def run(self, closing: asyncio.Event) -> None:
        """Until ``closing``: idle without pages, else poll, read totals and publish."""
        while not closing.is_set():
            if not self.subscribers:
                self._wanted.clear()
                await wait_any([self._wanted, closing], None)
                continue
            try:
                await self._tick()
            except Exception:  # a broken build must not end the console for good
                log.exception("console_feed_failed")
            await wait_event(closing, self.poll_sec)

    async def _tick(self, *, force: bool = False) -> None:
        now = time.monotonic()
        reconciled = self.reactor.state.reconciles != self._totals_reconciles
        if now >= self._totals_due or (reconciled and now >= self._totals_soonest):
            self._totals_due, self._totals_soonest = now + self.totals_sec, now + TOTALS_MIN_SEC
            self._totals_reconciles = self.reactor.state.reconciles
            await self.read_totals()
        if force or self._build_due(time.monotonic()):
            self.publish()


def _recent(row: dict[str, Any]) -> dict[str, Any]:
    """A recent task as the page lists it: ids, type, status, timings, error; no params."""
    keep = ("id", "task_type", "status", "worker_id", "attempts", "max_attempts")
    out = {k: row.get(k) for k in keep}
    for k in ("created_at", "updated_at"):
        out[k] = row[k].isoformat() if row.get(k) else None
    out["processing_sec"] = row.get("processing_sec")
    out["error_message"] = row.get("error_message")
    return out


def _leader(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    started = row.get("backend_start")
    return {
        "pid": row.get("pid"),
        "application_name": row.get("application_name"),
        "client_addr": row.get("client_addr"),
        "backend_start": started.isoformat() if started else None,
    }
