"""The reactor service: leadership, the LISTEN connection and the wake loop.

Wake-ups come from three sources: events (NOTIFY), the earliest per-worker deadline and
the sweep timer. Each wake-up runs one reconcile: snapshot -> decide -> act -> record.
A burst of events is coalesced: a reconcile runs at once when the last one is older than
COALESCE_WINDOW_SEC, otherwise when that window has passed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reactor.aio import wait_any, wait_event
from reactor.db.errors import CONNECTION_ERRORS, TRANSIENT_DB_ERRORS
from reactor.db.migrate import check_schema
from reactor.db.pool import GuardedPool, create_pool
from reactor.db.queries import query
from reactor.domain.actions import Cause, Drain
from reactor.domain.events import (
    DrainRequest,
    MalformedEvent,
    SweepRequest,
    TaskQueued,
    parse_event,
)
from reactor.domain.model import CAPACITY_STATUSES, LIVE_STATUSES, Limits, Snapshot
from reactor.domain.policy import decide, next_deadline
from reactor.domain.rules import desired_workers
from reactor.domain.spawn_gate import SpawnGate
from reactor.engine.executor import Executor
from reactor.engine.leader import Leadership, LeadershipLost
from reactor.engine.listener import Listener
from reactor.engine.metrics import Metrics
from reactor.engine.snapshot import read_snapshot
from reactor.engine.state import ActionRecord, ReactorState
from reactor.errors import ProviderError
from reactor.providers import make_provider
from reactor.providers.base import Provider
from reactor.settings import Settings

log = logging.getLogger(__name__)

DEADLINE_SLACK = 0.02  # seconds past a deadline, so the database agrees it has passed
RECONCILE_RETRY_MAX = 10.0
SHUTDOWN_GRACE = 30.0
MAX_COALESCE_WINDOW = 1.0  # seconds: the longest an event waits under sustained pressure
# After a reconcile woken by task_queued, one more follows this much later: an insert
# whose transaction straddled the doorbell's re-arm commits unrung (see 0005_triggers.sql).
TRAILING_CHECK = 0.25


@dataclass
class ReconcileResult:
    kind: str
    snapshot: Snapshot
    desired: int
    actions: list[ActionRecord] = field(default_factory=list)
    duration_ms: float = 0.0
    limits: Limits = field(default_factory=Limits)  # the spawn gate's, after the actions
    first_action_at: float | None = None  # time.monotonic() when the first action went out
    decide_again: bool = False  # a slot held by a pod that would not go is free

    def summary(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "kind": self.kind,
            "queued": snap.queued,
            "waiting_retry": snap.waiting,
            "in_progress": snap.in_progress,
            "desired_workers": self.desired,
            "workers": [
                {
                    "id": w.id,
                    "status": w.status,
                    "pod_id": w.pod_id,
                    "gpu_type": w.gpu_type,
                    "cost_per_hr": w.cost_per_hr,
                }
                for w in snap.workers
            ],
            "pods_seen": None if snap.pods is None else len(snap.pods),
            "hourly_burn_usd": round(snap.hourly_burn, 4),
            "actions": [a.as_dict() for a in self.actions],
            "duration_ms": round(self.duration_ms, 2),
        }


class Reactor:
    _term_started = False  # set by start_term(): load the database's part of the gate

    def __init__(
        self,
        settings: Settings,
        *,
        provider: Provider | None = None,
        metrics: Metrics | None = None,
        state: ReactorState | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.state = state or ReactorState()
        self.provider = provider
        self.pool: GuardedPool | None = None
        self.executor: Executor | None = None
        self.leadership = Leadership(dsn=settings.dsn(), fleet=settings.reactor_fleet)
        self._dirty = asyncio.Event()
        self._full_requested = True
        self._first_event_at: float | None = None
        self._manual_drains: list[str] = []
        self._checks: set[asyncio.Task[None]] = set()
        self._queued_event = False
        self._next_sweep = 0.0
        self._expire_pool = False
        self._list_failures = 0
        self.stop_event = asyncio.Event()
        self.metrics.budget.set(settings.max_hourly_spend_usd or 0)

    # --- lifecycle -----------------------------------------------------------------------
    async def open(self) -> None:
        self.pool = await create_pool(self.settings.dsn())
        async with self.pool.acquire() as conn:
            await check_schema(conn)
            # Whole seconds in the views' table: rounded up, so 0.5 s is not stored as 0.
            await conn.execute(
                query("sync_settings"),
                math.ceil(self.settings.gpu_idle_timeout_sec),
                math.ceil(self.settings.task_stuck_timeout_sec),
                math.ceil(self.settings.spawning_timeout_sec),
                math.ceil(self.settings.task_retry_delay_sec),
            )
        self.state.db_ok = True
        self.settings.worker_dsn()  # fail at start, not at the first spawn
        if self.provider is None:
            self.provider = make_provider(self.settings, on_request=self.metrics.provider_request)
        gate = SpawnGate.for_settings(self.settings)
        self.state.gate = gate  # what /status shows
        _bind_gate_metrics(self.metrics, gate)
        self.executor = Executor(
            pool=self.pool,
            provider=self.provider,
            settings=self.settings,
            metrics=self.metrics,
            state=self.state,
            gate=gate,
        )
        self.start_term()

    def start_term(self) -> None:
        """A term as leader begins: the next reconcile first loads what a previous leader
        left in the database (the start-failure breaker)."""
        self._term_started = True

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
            self._queued_event = True
        elif isinstance(event, SweepRequest):
            self._full_requested = True
        elif isinstance(event, DrainRequest):
            # Any login may NOTIFY; a drain is honoured once its sender is known not to
            # be a pod. Checked at once: the sending session may end any moment.
            check = asyncio.get_running_loop().create_task(
                self._check_drain(event.worker_id, sender_pid)
            )
            self._checks.add(check)
            check.add_done_callback(self._checks.discard)
            return
        self.wake()

    async def _check_drain(self, worker_id: str, sender_pid: int | None) -> None:
        refused = None
        if self.pool is None or sender_pid is None:
            refused = "sender unknown"
        else:
            try:
                row = await self.pool.fetchrow(query("drain_sender"), sender_pid)
            except TRANSIENT_DB_ERRORS as exc:
                row, refused = None, f"sender not checked: {exc}"[:200]
            if refused is None:
                if row is None:
                    refused = "sending session ended before it could be checked"
                elif row["is_worker"]:
                    refused = "sent by a gpu_worker login"
        if refused is not None:
            self.metrics.refused_drains.labels(
                reason="worker login" if refused.startswith("sent by") else "unverified"
            ).inc()
            log.warning(
                "manual_drain_refused",
                extra={
                    "worker_id": worker_id,
                    "sender_pid": sender_pid,
                    "reason": refused,
                    "hint": f"SELECT gpu_reactor_drain('{worker_id}') or gpu-reactor workers drain",
                },
            )
            self.state.record(
                ActionRecord(
                    time.time(),
                    "drain",
                    "refused",
                    "requested by NOTIFY",
                    worker_id,
                    detail=refused,
                )
            )
            return
        self._manual_drains.append(worker_id)
        self.wake()

    def wake(self, full: bool = False) -> None:
        if full:
            self._full_requested = True
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
        assert self.pool is not None and self.executor is not None and self.provider is not None
        started = time.monotonic()
        pods = None
        if full:
            # Pods are listed before the snapshot: every pod in the list had its intent
            # row written before it was created, so that row is in the snapshot.
            try:
                pods = await self.provider.list_pods()
                self._list_failures = 0
            except ProviderError as exc:
                # The provider's list is down; the database is not: everything that needs
                # no pod list (dead workers, requeues, scaling) still happens now, and the
                # comparison with the provider is retried soon (see wake_loop).
                self._list_failures += 1
                self.metrics.reconcile_errors.inc()
                self.state.last_error = f"listing pods failed: {exc}"[:300]
                log.warning(
                    "pod_list_failed", extra={"error": str(exc), "failures": self._list_failures}
                )
                full = False
        async with self.pool.acquire() as conn:
            snap = await read_snapshot(conn, pods)
        if self._term_started:
            await self.executor.load_breaker()
            self._term_started = False
        self.executor.observe(snap.workers)
        if full:
            await self.executor.refresh_price(max((w.cost_per_hr for w in snap.workers), default=0))
        gate = self.executor.gate
        actions = self._manual(snap) + decide(snap, self.settings, gate.limits(snap.now))
        applied = await self.executor.apply(actions, snap.now)
        if applied.slot_freed:
            self._dirty.set()  # a slot held by a pod that would not go is free: decide again
        result = ReconcileResult(
            "sweep" if full else "event",
            snap,
            desired_workers(snap, self.settings),
            applied.records,
            limits=gate.limits(snap.now),
            first_action_at=applied.first_action_at,
            decide_again=applied.slot_freed,
        )
        result.duration_ms = (time.monotonic() - started) * 1000
        self._record(result)
        return result

    def _manual(self, snap: Snapshot) -> list[Drain]:
        drains, self._manual_drains = self._manual_drains, []
        out = []
        for worker_id in dict.fromkeys(drains):
            worker = snap.worker(worker_id)
            if worker is None or worker.status not in CAPACITY_STATUSES:
                log.warning(
                    "manual_drain_ignored",
                    extra={"worker_id": worker_id, "reason": "not a live, undrained worker"},
                )
                continue
            reason = "requested by operator (NOTIFY drain)"
            out.append(Drain(worker_id, reason=reason, cause=Cause.OPERATOR))
        return out

    def _record(self, result: ReconcileResult) -> None:
        snap, m, st = result.snapshot, self.metrics, self.state
        m.reconciles.labels(kind=result.kind).inc()
        m.reconcile_duration.labels(kind=result.kind).observe(result.duration_ms / 1000)
        m.tasks.labels(status="Queued").set(snap.queued)
        m.tasks.labels(status="In Progress").set(snap.in_progress)
        for status in LIVE_STATUSES:
            m.workers.labels(status=status).set(sum(1 for w in snap.workers if w.status == status))
        m.desired_workers.set(result.desired)
        m.hourly_burn.set(snap.hourly_burn)
        age = (snap.now - snap.oldest_queued_at).total_seconds() if snap.oldest_queued_at else 0
        m.queue_oldest_age.set(max(age, 0))
        st.snapshot, st.desired_workers = snap, result.desired
        st.last_reconcile_at, st.last_reconcile_kind = time.time(), result.kind
        st.last_reconcile_ms, st.reconciles = result.duration_ms, st.reconciles + 1
        if result.kind == "sweep":
            st.last_sweep_at = time.time()
            m.last_sweep.set(st.last_sweep_at)
        if self._first_event_at is not None and result.first_action_at is not None:
            m.reaction_latency.observe(max(result.first_action_at - self._first_event_at, 0))
        if result.actions:
            log.info(
                "reconciled",
                extra={
                    "kind": result.kind,
                    "queued": snap.queued,
                    "in_progress": snap.in_progress,
                    "desired": result.desired,
                    "workers": len(snap.workers),
                    "actions": len(result.actions),
                    "ms": round(result.duration_ms, 1),
                },
            )

    # --- the wake loop -------------------------------------------------------------------
    def _sweep_interval(self) -> float:
        return self.settings.sweep_interval_sec * random.uniform(0.9, 1.1)

    async def wake_loop(self) -> None:
        last_end = -1e9
        deadline_at = float("inf")
        window = self.settings.coalesce_window_sec
        failures = 0
        while not self.stop_event.is_set():
            now = time.monotonic()
            timeout = max(min(deadline_at, self._next_sweep) - now, 0)
            await wait_any([self._dirty, self.stop_event], timeout)
            if self.stop_event.is_set():
                return
            since = time.monotonic() - last_end
            if self._dirty.is_set() and since < window:
                # Events right after a reconcile: fold them into one reconcile per window.
                await wait_event(self.stop_event, window - since)
                if self.stop_event.is_set():
                    return
            # Only tasks arriving back to back are pressure that widens the window; the
            # echoes of the reactor's own writes (worker_status, ...) are not.
            if self._queued_event and since < window:
                window = min(window * 2, MAX_COALESCE_WINDOW)
            else:
                window = self.settings.coalesce_window_sec
            full = self._full_requested or time.monotonic() >= self._next_sweep
            self._dirty.clear()
            self._full_requested = False
            trailing, self._queued_event = self._queued_event, False
            try:
                if self._expire_pool and self.pool is not None:
                    self._expire_pool = False
                    await self.pool.expire()
                result = await self.reconcile(full)
            except Exception as exc:  # a reconcile must never kill the loop: retry
                failures += 1
                self.metrics.reconcile_errors.inc()
                self.state.last_error = f"{type(exc).__name__}: {exc}"[:300]
                delay = min(0.2 * 2**failures, RECONCILE_RETRY_MAX)
                log.error(
                    "reconcile_failed",
                    extra={"error": self.state.last_error, "retry_in": round(delay, 2)},
                    exc_info=not isinstance(exc, (*TRANSIENT_DB_ERRORS, ProviderError)),
                )
                self._full_requested = self._full_requested or full
                if isinstance(exc, CONNECTION_ERRORS):
                    self._expire_pool = True
                await wait_event(self.stop_event, delay)
                self._dirty.set()
                continue
            failures = 0
            self._first_event_at = None
            last_end = time.monotonic()
            if result.kind == "sweep":
                self._next_sweep = last_end + self._sweep_interval()
            elif full:  # the sweep ran without the provider's list: retry it with backoff
                self._next_sweep = last_end + min(
                    0.5 * 2**self._list_failures, RECONCILE_RETRY_MAX, self._sweep_interval()
                )
            deadline = next_deadline(
                result.snapshot, self.settings, self.executor.limits() if self.executor else None
            )
            deadline_at = (
                (last_end + (deadline - result.snapshot.now).total_seconds() + DEADLINE_SLACK)
                if deadline
                else float("inf")
            )
            if trailing:
                deadline_at = min(deadline_at, last_end + TRAILING_CHECK)

    async def lead(self) -> None:
        """Act as the leader until stopped; raises LeadershipLost if the lock goes."""
        listener = Listener(
            dsn=self.settings.dsn(),
            on_payload=self.on_payload,
            on_connected=self._listener_connected,
            probe=self._probe,
            health=self.state.listener,
            metrics=self.metrics,
            check_interval=self.settings.listener_check_interval_sec,
        )
        self._full_requested = True
        self._next_sweep = 0.0
        self._expire_pool = True  # a new term: trust no connection from before it
        async with asyncio.TaskGroup() as group:
            watch = group.create_task(self.leadership.watch(), name="leader-watch")
            listen = group.create_task(listener.run(), name="listener")
            loop = group.create_task(self.wake_loop(), name="wake-loop")
            await loop  # returns when stop_event is set
            watch.cancel()
            listen.cancel()

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


def _bind_gate_metrics(metrics: Metrics, gate: SpawnGate) -> None:
    """The gauges read the gate at scrape time: no copy of its state to drift."""
    metrics.start_failures.set_function(lambda: gate.start_failures)
    metrics.spawn_blocked.set_function(
        lambda: float(gate.limits(datetime.now(UTC)).spawn_blocked_until is not None)
    )
