"""The shape of ``GET /status`` and ``gpu-reactor status --json``, and how it is built.

``build_status`` is pure: it reads a ReactorState (the reactor's memory, or one the CLI
filled from a fresh database read) and the settings, and returns a StatusView. Worker
health and ages are computed as of the snapshot (``snapshot_at``), the moment the data
was read; ``snapshot_age_sec`` says how old that is.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from reactor.db.pooler import POOLER_HINT, looks_like_pooler
from reactor.domain import rules
from reactor.domain.model import Limits, Snapshot, TaskState, WorkerState, WorkerStatus
from reactor.domain.pools import Pools
from reactor.engine.state import ActionRecord, ReactorState
from reactor.ops.status_pools import PoolView, UnroutedView, pool_views, pools_of, worker_pool
from reactor.settings import Settings

STATUS_VERSION: Literal[1] = 1
ACTIONS_SHOWN = 50
PROBE_LOST = "probe not received"  # ListenerHealth.last_error when a probe did not return

Role = Literal["starting", "standby", "leader", "stopping", "cli"]
Health = Literal["starting", "spawn_overdue", "stale", "stuck_task", "draining", "busy", "idle"]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkerView(_View):
    id: str
    status: str
    health: Health
    pod_id: str | None
    gpu_type: str | None
    cost_per_hr: float
    managed: bool
    created_at: datetime
    last_heartbeat: datetime | None
    heartbeat_age_sec: float | None
    current_task_id: str | None
    current_task_age_sec: float | None
    tasks_in_progress: int
    draining_since: datetime | None
    pool: str | None = None  # its GPU pool (``default`` without POOLS_FILE)


class QueueView(_View):
    queued: int
    waiting_retry: int = 0  # of the queued, those not claimable before their retry_at
    # Of the other queued, those no worker of the fleet could claim now, and why:
    blocked_waiting: int = 0  # a dependency is not Complete yet
    blocked_for_good: int = 0  # a dependency Failed, was Cancelled or is missing
    other_types: int = 0  # of a task type the fleet does not run (TASK_TYPES)
    claimable: int = 0
    demand: int = 0  # what the fleet is sized for (DEMAND_SQL's answer where it is set)
    in_progress: int
    oldest_queued_age_sec: float | None
    stuck_tasks: int
    desired_workers: int | None


class ActionView(_View):
    at: datetime
    kind: str
    outcome: str
    reason: str
    worker_id: str | None
    pod_id: str | None
    detail: str


class ListenerView(_View):
    connected: bool
    since: datetime | None
    last_event_at: datetime | None
    last_probe_ok_at: datetime | None
    reconnects: int
    last_error: str | None
    hint: str | None = None  # what probably is wrong, when something is


class BudgetView(_View):
    max_hourly_spend_usd: float | None
    hourly_burn_usd: float
    used_ratio: float | None
    expected_worker_price_usd: float
    spawn_blocked_until: datetime | None
    spawn_blocked_reason: str | None
    worker_start_failures: int = 0  # in a row; from 3, one probe pod at a time


class ReconcileView(_View):
    count: int
    last_at: datetime | None
    last_kind: str | None
    last_duration_ms: float | None
    last_sweep_at: datetime | None
    last_error: str | None


class StatusView(_View):
    version: Literal[1]
    fleet: str
    role: Role
    leader_present: bool | None
    provider: str
    pid: int
    host: str
    started_at: datetime
    uptime_sec: float
    observed_at: datetime
    snapshot_at: datetime | None
    snapshot_age_sec: float | None
    db_ok: bool
    settings: dict[str, Any]
    queue: QueueView | None
    workers: list[WorkerView]
    actions: list[ActionView]
    listener: ListenerView
    budget: BudgetView
    reconcile: ReconcileView
    pools: list[PoolView] = []  # one per GPU pool, in POOLS_FILE's order
    unrouted: UnroutedView = UnroutedView()  # claimable tasks no pool runs, by type


# --- health, as the reactor's policy sees it -----------------------------------------


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round(max((now - then).total_seconds(), 0.0), 3)


def worker_health(
    worker: WorkerState, tasks: Sequence[TaskState], settings: Settings, now: datetime
) -> Health:
    """One word for a live worker, from the rules the policy acts on (reactor.domain.rules),
    in the same order as the active_workers_health view."""
    if worker.status == WorkerStatus.SPAWNING:
        overdue = rules.spawn_timeout(worker, settings, now).breached
        return "spawn_overdue" if overdue else "starting"
    if rules.heartbeat_timeout(worker, settings, now).breached:
        return "stale"
    if any(rules.stuck_timeout(t, settings, now).breached for t in tasks):
        return "stuck_task"
    if worker.status == WorkerStatus.TERMINATING:
        return "draining"
    return "busy" if tasks else "idle"


def judged_by(worker: WorkerState, pools: Pools | None, settings: Settings) -> Settings:
    """The settings a worker's health is judged by, as the policy judges it: its pool's;
    the environment's once its pool left the file."""
    pool = pools.pool_of(worker) if pools is not None else None
    return pool.settings if pool is not None else settings


def stale_worker_count(
    snap: Snapshot | None, settings: Settings, pools: Pools | None = None
) -> int:
    if snap is None:
        return 0
    return sum(
        1
        for w in snap.workers
        if worker_health(w, snap.tasks_of(w.id), judged_by(w, pools, settings), snap.now) == "stale"
    )


def stuck_task_count(snap: Snapshot | None, settings: Settings, pools: Pools | None = None) -> int:
    if snap is None:
        return 0
    if pools is not None and pools.routed:  # each task by its worker's pool's rules
        return sum(
            1
            for t in snap.running
            if rules.stuck_timeout(t, _task_judged_by(t, snap, pools, settings), snap.now).breached
        )
    # The judgement the policy made of this snapshot (cached): a /metrics scrape reads it.
    return sum(1 for verdict in rules.judge(snap, settings).tasks if verdict.breached)


def _task_judged_by(task: TaskState, snap: Snapshot, pools: Pools, settings: Settings) -> Settings:
    worker = snap.worker(task.worker_id) if task.worker_id is not None else None
    return judged_by(worker, pools, settings) if worker is not None else settings


def listener_hint(state: ReactorState, settings: Settings) -> str | None:
    """Name the likely cause while the leader's NOTIFY probes do not come back: no probe
    has returned since the latest connect, and the last connection was lost that way (or
    the DSN points at a known transaction-mode pooler)."""
    lh = state.listener
    if state.role != "leader":
        return None
    probed = (
        lh.last_probe_ok_at is not None and lh.since is not None and lh.last_probe_ok_at >= lh.since
    )
    if lh.connected and probed:
        return None
    pooler = looks_like_pooler(settings.database_url.get_secret_value())
    if lh.last_error == PROBE_LOST or (pooler and not lh.connected):
        return (
            "NOTIFY probes do not come back: LISTEN does not work through a "
            "transaction-mode pooler (e.g. port 6543); " + POOLER_HINT
        )
    return None


# --- building the view ---------------------------------------------------------------


def _ts(unix: float | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


def _worker_view(
    worker: WorkerState, snap: Snapshot, settings: Settings, pools: Pools
) -> WorkerView:
    tasks = sorted(
        snap.tasks_of(worker.id), key=lambda t: t.started_at or datetime.max.replace(tzinfo=UTC)
    )
    current = tasks[0] if tasks else None
    return WorkerView(
        id=worker.id,
        status=worker.status,
        health=worker_health(worker, tasks, judged_by(worker, pools, settings), snap.now),
        pod_id=worker.pod_id,
        gpu_type=worker.gpu_type,
        cost_per_hr=round(worker.cost_per_hr, 4),
        managed=worker.managed,
        created_at=worker.created_at,
        last_heartbeat=worker.last_heartbeat,
        heartbeat_age_sec=_age(snap.now, worker.last_heartbeat),
        current_task_id=current.id if current else None,
        current_task_age_sec=_age(snap.now, current.started_at) if current else None,
        tasks_in_progress=len(tasks),
        draining_since=worker.draining_since,
        pool=worker_pool(pools, worker),
    )


def _action_view(record: ActionRecord) -> ActionView:
    return ActionView(
        at=datetime.fromtimestamp(record.at, UTC),
        kind=record.kind,
        outcome=record.outcome,
        reason=record.reason,
        worker_id=record.worker_id,
        pod_id=record.pod_id,
        detail=record.detail,
    )


def _queue_view(state: ReactorState, settings: Settings) -> QueueView | None:
    snap = state.snapshot
    if snap is None:
        return None
    return QueueView(
        queued=snap.queued,
        waiting_retry=snap.waiting,
        blocked_waiting=snap.blocked_waiting,
        blocked_for_good=snap.blocked_for_good,
        other_types=snap.other_types,
        claimable=snap.claimable,
        demand=snap.demand,
        in_progress=snap.in_progress,
        oldest_queued_age_sec=_age(snap.now, snap.oldest_queued_at),
        stuck_tasks=stuck_task_count(snap, settings, state.pools),
        desired_workers=state.desired_workers,
    )


def _budget_view(state: ReactorState, settings: Settings, now: datetime) -> BudgetView:
    """Spawn limits as the gate has them at ``now``: a pause that is over is not shown."""
    burn = state.snapshot.hourly_burn if state.snapshot else 0.0
    cap = settings.max_hourly_spend_usd
    limits = state.gate.limits(now) if state.gate is not None else Limits()
    return BudgetView(
        max_hourly_spend_usd=cap,
        hourly_burn_usd=round(burn, 4),
        used_ratio=round(burn / cap, 4) if cap else None,
        expected_worker_price_usd=round(limits.expected_price or settings.gpu_hourly_price_usd, 4),
        spawn_blocked_until=limits.spawn_blocked_until,
        spawn_blocked_reason=limits.spawn_blocked_reason,
        worker_start_failures=limits.start_failures,
    )


def build_status(
    state: ReactorState,
    settings: Settings,
    *,
    provider: str | None = None,
    leader_present: bool | None = None,
    now: float | None = None,
) -> StatusView:
    """What /status shows. ``now`` is unix time (defaults to the clock)."""
    now = time.time() if now is None else now
    snap = state.snapshot
    lh = state.listener
    if leader_present is None and state.role == "leader":
        leader_present = True
    actions = list(state.actions)[-ACTIONS_SHOWN:]
    pools = pools_of(state, settings)
    per_pool, unrouted = pool_views(state, settings, datetime.fromtimestamp(now, UTC))
    return StatusView(
        version=STATUS_VERSION,
        fleet=settings.reactor_fleet,
        role=state.role,  # type: ignore[arg-type]
        leader_present=leader_present,
        provider=provider or settings.reactor_provider,
        pid=os.getpid(),
        host=socket.gethostname(),
        started_at=datetime.fromtimestamp(state.started_at, UTC),
        uptime_sec=round(max(now - state.started_at, 0.0), 3),
        observed_at=datetime.fromtimestamp(now, UTC),
        snapshot_at=snap.now if snap else None,
        snapshot_age_sec=_age(datetime.fromtimestamp(now, UTC), snap.now) if snap else None,
        db_ok=state.db_ok,
        settings=settings.redacted(),
        queue=_queue_view(state, settings),
        workers=[
            _worker_view(w, snap, settings, pools)
            for w in sorted(snap.workers, key=lambda w: w.created_at)
        ]
        if snap
        else [],
        actions=[_action_view(r) for r in reversed(actions)],
        listener=ListenerView(
            connected=lh.connected,
            since=_ts(lh.since),
            last_event_at=_ts(lh.last_event_at),
            last_probe_ok_at=_ts(lh.last_probe_ok_at),
            reconnects=lh.reconnects,
            last_error=lh.last_error,
            hint=listener_hint(state, settings),
        ),
        budget=_budget_view(state, settings, datetime.fromtimestamp(now, UTC)),
        reconcile=ReconcileView(
            count=state.reconciles,
            last_at=_ts(state.last_reconcile_at),
            last_kind=state.last_reconcile_kind,
            last_duration_ms=(
                round(state.last_reconcile_ms, 2) if state.last_reconcile_ms is not None else None
            ),
            last_sweep_at=_ts(state.last_sweep_at),
            last_error=state.last_error,
        ),
        pools=per_pool,
        unrouted=unrouted,
    )


def status_json(view: StatusView, secrets: Sequence[str] = (), *, indent: bool = False) -> bytes:
    """The view as JSON bytes, with any secret value that slipped into a message removed."""
    option = orjson.OPT_INDENT_2 if indent else 0
    return scrub_secrets(orjson.dumps(view.model_dump(mode="json"), option=option), secrets)


def scrub_secrets(body: bytes, secrets: Sequence[str]) -> bytes:
    """``body`` with any secret value that slipped into a message replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            body = body.replace(secret.encode(), b"**********")
    return body
