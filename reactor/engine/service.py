"""The reactor service: leadership, the LISTEN connection and the wake loop.

Wake-ups come from events (NOTIFY), the earliest per-worker deadline and the sweep timer;
when to wake and for which kind of reconcile is the wake schedule's answer
(reactor/domain/wake.py). Each wake-up runs one reconcile: snapshot -> decide -> act ->
record. A leadership term owns its tasks (the listener, the lock watch, the wake loop
and the drain checks) and ends them all with it; ``serve`` stops the whole service on
the shutdown ladder (reactor/engine/supervision.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import Any

from reactor.aio import wait_any, wait_event
from reactor.db.errors import CONNECTION_ERRORS, TRANSIENT_DB_ERRORS
from reactor.db.migrate import check_schema
from reactor.db.pool import GuardedPool, create_pool
from reactor.db.queries import query
from reactor.domain.events import (
    DrainRequest,
    MalformedEvent,
    ReloadRequest,
    SweepRequest,
    TaskQueued,
    parse_event,
)
from reactor.domain.fleet import next_deadline_fleet
from reactor.domain.spawn_gate import SpawnGate
from reactor.domain.wake import WakeSchedule
from reactor.engine.collection import collection_paused
from reactor.engine.demand import DemandReader, demand_sql_for
from reactor.engine.drains import drain_refusal, record_refusal
from reactor.engine.executor import Executor
from reactor.engine.leader import Leadership, LeadershipLost
from reactor.engine.listener import Listener
from reactor.engine.metrics import Metrics
from reactor.engine.reconcile import Reconciler, ReconcileResult, bind_gate_metrics, record
from reactor.engine.state import ReactorState
from reactor.engine.supervision import CANCEL_DEADLINE_SEC, Term, run_until_stopped
from reactor.errors import ConfigError, ProviderError
from reactor.pools_file import load_pools
from reactor.providers import make_provider
from reactor.providers.base import Provider
from reactor.settings import Settings

log = logging.getLogger(__name__)


class Reactor:
    def __init__(
        self,
        settings: Settings,
        *,
        provider: Provider | None = None,
        metrics: Metrics | None = None,
        state: ReactorState | None = None,
    ) -> None:
        self.settings = settings
        self.pools = load_pools(settings)  # a POOLS_FILE that does not validate stops here
        self.metrics = metrics or Metrics()
        self.state = state or ReactorState()
        self.state.pools = self.pools
        self.provider = provider
        self.pool: GuardedPool | None = None
        self.executor: Executor | None = None
        self.reconciler: Reconciler | None = None
        self.leadership = Leadership(dsn=settings.dsn(), fleet=settings.reactor_fleet)
        self._dirty = asyncio.Event()  # the doorbell: something may have changed
        self.schedule = self._new_schedule()
        self._term: Term | None = None  # the tasks of the leadership term in force
        self._first_event_at: float | None = None
        self._manual_drains: list[str] = []
        self._expire_pool = False
        self.stop_event = asyncio.Event()
        self.metrics.budget.set(settings.max_hourly_spend_usd or 0)

    # --- lifecycle -----------------------------------------------------------------------
    async def open(self) -> None:
        self.pool = await create_pool(self.settings.dsn())
        async with self.pool.acquire() as conn:
            await check_schema(conn)
            sql = await demand_sql_for(
                conn, self.settings.demand_sql, self.settings.worker_protocol
            )
            if self.pools.routed:
                sql = None  # the demand is routed between pools, type by type
            demand = DemandReader(sql, self.metrics.demand_sql_errors.inc)
            log.info("demand", extra={"demand_sql": sql or "gpu-reactor's claimable count"})
            await demand.check(conn)  # a DEMAND_SQL that does not work stops start-up
            # Whole seconds in the views' table: rounded up, so 0.5 s is not stored as 0.
            await conn.execute(
                query("sync_settings"),
                math.ceil(self.settings.gpu_idle_timeout_sec),
                math.ceil(self.settings.task_stuck_timeout_sec),
                math.ceil(self.settings.spawning_timeout_sec),
                math.ceil(self.settings.task_retry_delay_sec),
                list(self.settings.exempt_task_types()),
            )
        self.state.db_ok = True
        if self.settings.worker_protocol == "gpu-worker":
            self.settings.worker_dsn()  # fail at start, not at the first spawn
        if self.pools.routed:
            log.info("pools", extra={"file": self.pools.source, "pools": list(self.pools.names)})
        if self.provider is None:
            self.provider = make_provider(self.settings, on_request=self.metrics.provider_request)
        gate = SpawnGate.for_settings(self.pools.first.settings)  # its own price, backoff
        self.state.gate = gate  # what /status shows
        bind_gate_metrics(self.metrics, gate)
        self.executor = Executor(
            pool=self.pool,
            provider=self.provider,
            settings=self.settings,
            metrics=self.metrics,
            state=self.state,
            gate=gate,
            pools=self.pools,
        )
        self.state.gates = self.executor.gates
        self.reconciler = Reconciler(
            pool=self.pool,
            provider=self.provider,
            executor=self.executor,
            settings=self.settings,
            metrics=self.metrics,
            state=self.state,
            demand=demand,
        )
        async with self.pool.acquire() as conn:
            await self.reconciler.check_pool_demand(conn)  # a pool's bad demand_sql stops it

    def start_term(self) -> None:
        """A term as leader begins: its first reconcile loads what a previous leader left
        in the database (the start-failure breaker)."""
        if self.reconciler is not None:
            self.reconciler.start_term()

    async def close(self) -> None:
        await self.leadership.release()
        if self.provider is not None:
            await self.provider.close()
        if self.pool is not None:
            await self.pool.close()

    # --- events --------------------------------------------------------------------------
    def on_payload(self, payload: str, sender_pid: int | None = None) -> None:
        try:
            event = parse_event(payload)
        except MalformedEvent as exc:
            self.metrics.malformed_events.inc()
            log.warning("malformed_event", extra={"error": str(exc)})
            return
        self.metrics.events.labels(event=event.event).inc()
        if isinstance(event, TaskQueued):
            self.schedule.task_queued()
        elif isinstance(event, SweepRequest):
            self.schedule.request_sweep()
        elif isinstance(event, ReloadRequest):
            self.reload()
            return
        elif isinstance(event, DrainRequest):
            # Any login may NOTIFY; a drain is honoured once its sender is known not to
            # be a pod. Checked at once (the sending session may end any moment), in a
            # task of the term that heard it: it ends with the term.
            check = self._check_drain(event.worker_id, sender_pid)
            name = f"drain-check-{event.worker_id}"[:100]
            if self._term is None or self._term.start(check, name) is None:
                check.close()
                log.warning("manual_drain_dropped", extra={"worker_id": event.worker_id})
            return
        self.wake()

    async def _check_drain(self, worker_id: str, sender_pid: int | None) -> None:
        refused = await drain_refusal(self.pool, sender_pid)
        if refused is not None:
            record_refusal(self.metrics, self.state, worker_id, sender_pid, refused)
            return
        self._manual_drains.append(worker_id)
        self.wake()

    def reload(self) -> bool:
        """Re-read POOLS_FILE (SIGHUP, NOTIFY reload). A file that does not validate is
        refused with one line and the pools in force stay; a pool that was removed has its
        workers drained by the next reconcile, never killed mid-task."""
        try:
            pools = load_pools(self.settings)
        except ConfigError as exc:
            self.metrics.pool_reloads.labels(outcome="refused").inc()
            self.state.last_error = f"POOLS_FILE reload refused: {exc}"[:300]
            log.error("pools_reload_refused", extra={"error": str(exc)})
            return False
        before = self.pools.names
        self.pools = self.state.pools = pools
        if self.reconciler is not None:
            self.reconciler.pools = pools
        self.metrics.pool_reloads.labels(outcome="ok").inc()
        log.info(
            "pools_reloaded",
            extra={
                "pools": list(pools.names),
                "added": [n for n in pools.names if n not in before],
                "removed": [n for n in before if n not in pools.names],
            },
        )
        self.wake()
        return True

    def wake(self, full: bool = False) -> None:
        if full:
            self.schedule.request_sweep()
        if self._first_event_at is None:
            self._first_event_at = time.monotonic()
        self._dirty.set()

    def _listener_connected(self) -> None:
        # A listener that had to reconnect means the network broke: pooled connections
        # may be half-open as well. Replace them before the reconcile that follows.
        self._expire_pool = True
        self.wake(full=True)

    async def _probe(self, channel: str) -> None:
        assert self.pool is not None
        await self.pool.execute("SELECT pg_notify($1, 'probe')", channel)

    # --- reconcile -----------------------------------------------------------------------
    async def reconcile(self, full: bool) -> ReconcileResult:
        """One reconcile now (a sweep when ``full``), with the drains asked for so far."""
        assert self.reconciler is not None, "open() first"
        drains, self._manual_drains = self._manual_drains, []
        result = await self.reconciler.run(full, drains)
        self._record(result)
        return result

    def _record(self, result: ReconcileResult) -> None:
        record(result, self.metrics, self.state, self._first_event_at)

    # --- the wake loop -------------------------------------------------------------------
    def _new_schedule(self) -> WakeSchedule:
        return WakeSchedule(
            coalesce_window=self.settings.coalesce_window_sec,
            sweep_interval=self.settings.sweep_interval_sec,
            jitter=random.uniform,
        )

    async def wake_loop(self) -> None:
        schedule = self.schedule
        while not self.stop_event.is_set():
            await wait_any([self._dirty, self.stop_event], schedule.wait_time(time.monotonic()))
            hold = schedule.hold(time.monotonic(), rang=self._dirty.is_set())
            if await wait_event(self.stop_event, hold):
                return
            kind = schedule.begin(time.monotonic())
            self._dirty.clear()
            try:
                if self._expire_pool and self.pool is not None:
                    self._expire_pool = False
                    await self.pool.expire()
                result = await self.reconcile(full=kind == "sweep")
            except Exception as exc:  # a reconcile must never kill the loop: retry
                retry_in = schedule.failed()
                self._reconcile_failed(exc, retry_in)
                if await wait_event(self.stop_event, retry_in):
                    return
                self._dirty.set()
                continue
            self._first_event_at = None
            if result.decide_again:
                self._dirty.set()  # a slot held by a pod that would not go is free
            with collection_paused():
                deadline = next_deadline_fleet(
                    result.snapshot, result.pools or self.pools, result.pool_limits
                )
            schedule.ran(
                time.monotonic(),
                "sweep" if result.kind == "sweep" else "event",
                deadline=deadline,
                db_now=result.snapshot.now,
            )

    def _reconcile_failed(self, exc: Exception, retry_in: float) -> None:
        self.metrics.reconcile_errors.inc()
        self.state.last_error = f"{type(exc).__name__}: {exc}"[:300]
        log.error(
            "reconcile_failed",
            extra={"error": self.state.last_error, "retry_in": round(retry_in, 2)},
            exc_info=not isinstance(exc, (*TRANSIENT_DB_ERRORS, ProviderError)),
        )
        if isinstance(exc, CONNECTION_ERRORS):
            self._expire_pool = True

    # --- leadership and the service -------------------------------------------------------
    async def lead(self) -> None:
        """Act as the leader until stopped; raises LeadershipLost if the lock goes. The
        term's tasks (lock watch, listener, wake loop, drain checks) end with it."""
        listener = Listener(
            dsn=self.settings.dsn(),
            on_payload=self.on_payload,
            on_connected=self._listener_connected,
            probe=self._probe,
            health=self.state.listener,
            metrics=self.metrics,
            check_interval=self.settings.listener_check_interval_sec,
        )
        self.schedule = self._new_schedule()  # a new term begins with a sweep, at once
        self.start_term()  # ... which first loads what an earlier leader left in the database
        self._expire_pool = True  # a new term: trust no connection from before it
        async with asyncio.TaskGroup() as group:
            self._term = term = Term(group)
            try:
                term.start(self.leadership.watch(), "leader-watch")
                term.start(listener.run(), "listener")
                await group.create_task(self.wake_loop(), name="wake-loop")
            finally:  # stopped, lost or failed: nothing of this term runs on
                self._term = None
                term.end()

    async def run(self) -> None:
        """Stand by or lead until ``stop_event``; then release everything."""
        try:
            await self.open()
            while not self.stop_event.is_set():
                self.state.role = "standby"
                self.metrics.leader.set(0)
                log.info("standby", extra={"fleet": self.settings.reactor_fleet})
                if not await self.leadership.acquire(self.stop_event):
                    break
                self.state.role = "leader"
                self.metrics.leader.set(1)
                log.info("leader_elected", extra={"fleet": self.settings.reactor_fleet})
                try:
                    await self.lead()
                except* LeadershipLost as group:
                    log.error("leadership_lost", extra={"error": str(group.exceptions[0])})
                    await self.leadership.release()
        finally:
            self.state.role = "stopping"
            self.metrics.leader.set(0)
            await self.close()
            log.info("stopped")

    async def serve(self, *, cancel_deadline: float = CANCEL_DEADLINE_SEC) -> int:
        """``run`` until ``stop_event``, then the shutdown ladder: REACTOR_SHUTDOWN_GRACE_SEC
        to finish and let go, a cancel, ``cancel_deadline`` for it to unwind. 0, or 1 when
        it did not unwind (the stacks are logged: exit rather than wait on it)."""
        grace = self.settings.reactor_shutdown_grace_sec
        ended = await run_until_stopped(
            self.run(),
            self.stop_event,
            name="reactor",
            grace=grace,
            cancel_deadline=cancel_deadline,
        )
        return 0 if ended else 1

    async def once(self) -> dict[str, Any]:
        """One full reconcile, only if no other reactor leads; returns a summary."""
        await self.open()
        try:
            if not await self.leadership.try_acquire():
                return {
                    "leader": False,
                    "error": "another reactor holds the leader lock; nothing done",
                }
            result = await self.reconcile(full=True)
            return {"leader": True, **result.summary()}
        finally:
            await self.close()
