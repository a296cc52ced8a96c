"""One reconcile, what every wake-up runs: list the pods (on a sweep), read a snapshot,
decide, act, record.

``Reconciler`` holds what one reconcile needs (the pool, the provider, the executor and
its spawn gate); the service decides when to run it (reactor/domain/wake.py) and owns
everything that lives longer (leadership, the listener, the wake loop).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from reactor.db.pool import GuardedPool
from reactor.domain.actions import Cause, Drain
from reactor.domain.fleet import decide_fleet, desired_fleet
from reactor.domain.model import CAPACITY_STATUSES, LIVE_STATUSES, Limits, Snapshot
from reactor.domain.pools import Pools
from reactor.domain.routing import Routing, route
from reactor.domain.spawn_gate import SpawnGate
from reactor.engine.collection import collection_paused
from reactor.engine.demand import DemandReader
from reactor.engine.executor import Executor
from reactor.engine.metrics import Metrics
from reactor.engine.pool_metrics import record_pools
from reactor.engine.snapshot import read_snapshot
from reactor.engine.state import ActionRecord, ReactorState
from reactor.errors import ConfigError, ProviderError
from reactor.providers.base import Provider
from reactor.settings import Settings

log = logging.getLogger("reactor.engine.service")


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
    pools: Pools | None = None  # the pools it was decided with
    pool_limits: dict[str, Limits] = field(default_factory=dict)  # each pool's, after
    pool_desired: dict[str, int] = field(default_factory=dict)

    @property
    def routing(self) -> Routing | None:
        """Each pool's part of the snapshot, with POOLS_FILE."""
        if self.pools is None or not self.pools.routed:
            return None
        return route(self.snapshot, self.pools, self.pool_limits)

    def summary(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "kind": self.kind,
            "queued": snap.queued,
            "waiting_retry": snap.waiting,
            "blocked_waiting": snap.blocked_waiting,
            "blocked_for_good": snap.blocked_for_good,
            "other_types": snap.other_types,
            "demand": snap.demand,
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


class Reconciler:
    """Snapshot -> decide -> act -> record, for the reactor that leads."""

    def __init__(
        self,
        *,
        pool: GuardedPool,
        provider: Provider,
        executor: Executor,
        settings: Settings,
        metrics: Metrics,
        state: ReactorState,
        demand: DemandReader | None = None,
        pools: Pools | None = None,
    ) -> None:
        self.pool = pool
        self.provider = provider
        self.executor = executor
        self.settings = settings
        self.metrics = metrics
        self.state = state
        self.demand = demand or DemandReader(settings.demand_sql)
        self.pools = pools or executor.pools
        self._readers: tuple[Pools, dict[str, DemandReader]] | None = None
        self._term_started = True  # load the database's part of the gate first

    def pool_demand(self) -> dict[str, DemandReader]:
        """A reader of each pool's own demand_sql, made again when the pools change (a
        reader keeps its last good answer)."""
        pools = self.pools
        if self._readers is None or self._readers[0] is not pools:
            old = self._readers[1] if self._readers is not None else {}
            readers = {}
            for p in pools:
                sql = p.settings.demand_sql if pools.routed else None
                if sql is None:
                    continue
                known = old.get(p.name)
                readers[p.name] = (
                    known
                    if known is not None and known.sql == sql
                    else DemandReader(sql, self.metrics.demand_sql_errors.inc)
                )
            self._readers = (pools, readers)
        return self._readers[1]

    async def check_pool_demand(self, conn: asyncpg.Connection) -> None:
        """At start-up: a pool's demand_sql that does not work stops the reactor."""
        for name, reader in self.pool_demand().items():
            try:
                await reader.check(conn)
            except ConfigError as exc:
                raise ConfigError(
                    f"pool {name!r}: {str(exc).replace('DEMAND_SQL', 'demand_sql', 1)}"
                ) from None

    def start_term(self) -> None:
        """A term as leader begins: the next reconcile first loads what a previous leader
        left in the database (the start-failure breaker)."""
        self._term_started = True

    async def run(self, full: bool, drains: list[str]) -> ReconcileResult:
        """One reconcile (a sweep when ``full``); ``drains`` are the operator's drain
        requests whose sender was verified."""
        started = time.monotonic()
        pods = None
        if full:
            # Pods are listed before the snapshot: every pod in the list had its intent
            # row written before it was created, so that row is in the snapshot.
            try:
                pods = await self.provider.list_pods()
            except ProviderError as exc:
                # The provider's list is down; the database is not: everything that needs
                # no pod list (dead workers, requeues, scaling) still happens now, and the
                # comparison with the provider is retried soon (see wake_loop).
                self.metrics.reconcile_errors.inc()
                self.state.last_error = f"listing pods failed: {exc}"[:300]
                log.warning("pod_list_failed", extra={"error": str(exc)})
                full = False
        pools = self.pools
        if pools is not self.executor.pools:
            self.executor.set_pools(pools)
        types = pools.patterns() if pools.routed else tuple(self.settings.task_types)
        async with self.pool.acquire() as conn:
            snap = await read_snapshot(
                conn,
                pods,
                task_types=types or (),
                demand=None if pools.routed else self.demand,
                by_type=pools.routed or bool(types),
                pool_demand=self.pool_demand(),
            )
        if self._term_started:
            await self.executor.load_breaker()
            self._term_started = False
        self.executor.observe(snap.workers)
        if full:
            await self.executor.refresh_price(snap.workers)
        limits = self.executor.limits(snap.now)
        with collection_paused():
            actions = manual_drains(snap, drains) + decide_fleet(snap, pools, limits)
        applied = await self.executor.apply(actions, snap.now)
        after = self.executor.limits(snap.now)
        desired = desired_fleet(snap, pools, limits)
        result = ReconcileResult(
            "sweep" if full else "event",
            snap,
            sum(desired.values()),
            applied.records,
            limits=after[pools.first.name],
            first_action_at=applied.first_action_at,
            decide_again=applied.slot_freed,
            pools=pools,
            pool_limits=after,
            pool_desired=desired,
        )
        result.duration_ms = (time.monotonic() - started) * 1000
        return result


def manual_drains(snap: Snapshot, drains: list[str]) -> list[Drain]:
    """The operator's drain requests (NOTIFY, sender verified) for workers still live."""
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


def record(
    result: ReconcileResult, metrics: Metrics, state: ReactorState, first_event_at: float | None
) -> None:
    """A reconcile's figures into the metrics and the state /status reads."""
    snap, m, st = result.snapshot, metrics, state
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
    st.routing, st.pool_desired = result.routing, result.pool_desired
    if result.pools is not None:
        record_pools(m, snap, result.pools, result.routing, result.pool_desired, result.pool_limits)
    st.last_reconcile_at, st.last_reconcile_kind = time.time(), result.kind
    st.last_reconcile_ms, st.reconciles = result.duration_ms, st.reconciles + 1
    st.history.add(snap, st.last_reconcile_at)
    if result.kind == "sweep":
        st.last_sweep_at = time.time()
        m.last_sweep.set(st.last_sweep_at)
    if first_event_at is not None and result.first_action_at is not None:
        m.reaction_latency.observe(max(result.first_action_at - first_event_at, 0))
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


def bind_gate_metrics(metrics: Metrics, gate: SpawnGate) -> None:
    """The gauges read the gate at scrape time: no copy of its state to drift."""
    metrics.start_failures.set_function(lambda: gate.start_failures)
    metrics.spawn_blocked.set_function(
        lambda: float(gate.limits(datetime.now(UTC)).spawn_blocked_until is not None)
    )
