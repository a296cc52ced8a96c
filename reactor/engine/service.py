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
from dataclasses import dataclass, field
from typing import Any

from reactor.aio import wait_any, wait_event
from reactor.db.errors import CONNECTION_ERRORS, TRANSIENT_DB_ERRORS
from reactor.db.migrate import check_schema
from reactor.db.pool import GuardedPool, create_pool
from reactor.db.queries import query
from reactor.domain.actions import Drain
from reactor.domain.events import (
    DrainRequest,
    MalformedEvent,
    SweepRequest,
    TaskQueued,
    parse_event,
)
from reactor.domain.model import Snapshot
from reactor.domain.policy import decide, next_deadline
from reactor.domain.rules import desired_workers
from reactor.domain.wake import WakeSchedule
from reactor.engine.drains import drain_refusal, record_refusal
from reactor.engine.executor import Executor
from reactor.engine.leader import Leadership, LeadershipLost
from reactor.engine.listener import Listener
from reactor.engine.metrics import Metrics
from reactor.engine.snapshot import read_snapshot
from reactor.engine.state import ActionRecord, ReactorState
from reactor.engine.supervision import CANCEL_DEADLINE_SEC, Term, run_until_stopped
from reactor.errors import ProviderError
from reactor.providers import make_provider
from reactor.providers.base import Provider
from reactor.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ReconcileResult:
    kind: str
    snapshot: Snapshot
    desired: int
    actions: list[ActionRecord] = field(default_factory=list)
    duration_ms: float = 0.0

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
        self._dirty = asyncio.Event()  # the doorbell: something may have changed
        self.schedule = self._new_schedule()
        self._term: Term | None = None  # the tasks of the leadership term in force
        self._first_event_at: float | None = None
        self._manual_drains: list[str] = []
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
        self.executor = Executor(
            pool=self.pool,
            provider=self.provider,
            settings=self.settings,
            metrics=self.metrics,
            state=self.state,
        )

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
        self.executor.observe(snap.workers)
        if full:
            await self.executor.refresh_price(max((w.cost_per_hr for w in snap.workers), default=0))
        limits = self.executor.limits()
        actions = decide(snap, self.settings, limits)
        actions = self._manual(snap) + actions
        self.executor.first_action_at = None
        records = (
            await self.executor.apply(actions, snap.now)
            if actions or self.executor.terminations_due(snap.now)
            else []
        )
        if self.executor.limits().unconfirmed_pods < limits.unconfirmed_pods:
            self._dirty.set()  # a slot held by a pod that would not go is free: decide again
        result = ReconcileResult(
            "sweep" if full else "event", snap, desired_workers(snap, self.settings), records
        )
        result.duration_ms = (time.monotonic() - started) * 1000
        self._record(result)
        return result

    def _manual(self, snap: Snapshot) -> list[Drain]:
        drains, self._manual_drains = self._manual_drains, []
        out = []
        for worker_id in dict.fromkeys(drains):
            worker = snap.worker(worker_id)
            if worker is None or worker.status not in ("spawning", "active"):
                log.warning(
                    "manual_drain_ignored",
                    extra={"worker_id": worker_id, "reason": "not a live, undrained worker"},
                )
                continue
            out.append(Drain(worker_id, reason="requested by operator (NOTIFY drain)"))
        return out

    def _record(self, result: ReconcileResult) -> None:
        snap, m, st = result.snapshot, self.metrics, self.state
        m.reconciles.labels(kind=result.kind).inc()
        m.reconcile_duration.labels(kind=result.kind).observe(result.duration_ms / 1000)
        m.tasks.labels(status="Queued").set(snap.queued)
        m.tasks.labels(status="In Progress").set(snap.in_progress)
        for status in ("spawning", "active", "terminating"):
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
        assert self.executor is not None
        if self._first_event_at is not None and self.executor.first_action_at is not None:
            m.reaction_latency.observe(max(self.executor.first_action_at - self._first_event_at, 0))
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
            deadline = next_deadline(
                result.snapshot, self.settings, self.executor.limits() if self.executor else None
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
