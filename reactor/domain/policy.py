"""The deciding part of the reactor: pure functions, no I/O, no clock.

``decide(snapshot, settings, limits)`` returns the actions that bring the fleet in line
with the queue; ``next_deadline`` says when, absent any event, the answer could change.
``snapshot.now`` is the database's clock, so every comparison uses one time source.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from reactor.domain.actions import (
    Action,
    AttachPod,
    Drain,
    RequeueOrphans,
    RequeueTask,
    Retire,
    Spawn,
    TerminatePod,
)
from reactor.domain.model import Limits, Snapshot, WorkerState
from reactor.domain.rules import desired_workers
from reactor.domain.spawn_gate import START_FAILURES_BEFORE_PROBING
from reactor.settings import Settings

# A pod just created may take a moment to show in the provider's list.
POD_LIST_GRACE = timedelta(seconds=60)


def _sec(value: float) -> timedelta:
    return timedelta(seconds=value)


def _last_sign_of_life(worker: WorkerState) -> datetime:
    return worker.last_heartbeat or worker.activated_at or worker.created_at


def _recover(worker: WorkerState, snap: Snapshot, settings: Settings) -> Action | None:
    """Dead, overdue or drained workers: the action that ends them, if any."""
    now = snap.now
    if worker.status == "spawning":
        if now - worker.created_at >= _sec(settings.spawning_timeout_sec):
            return Retire(
                worker.id,
                worker.pod_id,
                status="error",
                cause="spawn_timeout",
                reason=f"no heartbeat {settings.spawning_timeout_sec:g}s after spawn "
                f"(SPAWNING_TIMEOUT_SEC)",
                start_failed=True,
            )
        return None
    silent = now - _last_sign_of_life(worker)
    if silent >= _sec(settings.gpu_idle_timeout_sec):
        return Retire(
            worker.id,
            worker.pod_id,
            status="error",
            cause="heartbeat",
            reason=f"heartbeat stale for {silent.total_seconds():.0f}s "
            f"(GPU_IDLE_TIMEOUT_SEC={settings.gpu_idle_timeout_sec:g})",
        )
    if worker.status != "terminating":
        return None
    if not snap.tasks_of(worker.id):
        return Retire(
            worker.id,
            worker.pod_id,
            status="terminated",
            cause="drained",
            reason="drained: no task in progress",
        )
    since = worker.draining_since or worker.created_at
    if now - since >= _sec(settings.graceful_shutdown_timeout_sec):
        return Retire(
            worker.id,
            worker.pod_id,
            status="terminated",
            cause="drain_timeout",
            reason=f"drain limit of {settings.graceful_shutdown_timeout_sec:g}s passed "
            f"with a task in progress (GRACEFUL_SHUTDOWN_TIMEOUT_SEC)",
        )
    return None


def _stuck_tasks(
    snap: Snapshot, settings: Settings, ending: set[str], draining: set[str]
) -> list[Action]:
    actions: list[Action] = []
    limit = _sec(settings.task_stuck_timeout_sec)
    for task in snap.running:
        if task.worker_id is None or task.worker_id in ending or task.started_at is None:
            continue
        if snap.now - task.started_at < limit:
            continue
        actions.append(
            RequeueTask(
                task.id,
                task.worker_id,
                task.attempts,
                reason=f"stuck: In Progress longer than "
                f"{settings.task_stuck_timeout_sec:g}s (TASK_STUCK_TIMEOUT_SEC)",
            )
        )
        worker = snap.worker(task.worker_id)
        if worker is not None and worker.status == "active" and worker.id not in draining:
            draining.add(worker.id)
            actions.append(Drain(worker.id, reason="its task was stuck"))
    return actions


def _orphaned_tasks(snap: Snapshot) -> list[Action]:
    live = {w.id for w in snap.workers}
    lost = sorted({t.worker_id or "" for t in snap.running if t.worker_id not in live})
    if not lost:
        return []
    return [RequeueOrphans(tuple(lost), reason="task held by a worker that is no longer live")]


def _reconcile_pods(
    snap: Snapshot, settings: Settings, ending: set[str], ended_pods: set[str]
) -> list[Action]:
    """Compare the provider's fleet pods with the live rows (sweep only)."""
    assert snap.pods is not None
    fleet = [p for p in snap.pods if p.belongs_to(settings.reactor_fleet)]
    by_id = {p.id: p for p in fleet}
    by_name = {p.name: p for p in fleet}
    explained = set(ended_pods)
    actions: list[Action] = []
    for worker in snap.workers:
        if not worker.managed:
            continue
        pod = by_id.get(worker.pod_id) if worker.pod_id else by_name.get(worker.id)
        if pod is not None:
            explained.add(pod.id)
        if worker.id in ending:
            continue
        young = snap.now - worker.created_at < POD_LIST_GRACE
        if pod is None:
            if young:
                continue
            if worker.pod_id is None:
                ending.add(worker.id)
                actions.append(
                    Retire(
                        worker.id,
                        None,
                        status="error",
                        cause="create_lost",
                        reason="no pod was ever created for this worker",
                    )
                )
            else:
                ending.add(worker.id)
                actions.append(
                    Retire(
                        worker.id,
                        None,
                        status="error",
                        cause="pod_missing",
                        reason=f"pod {worker.pod_id} no longer exists at the provider",
                        start_failed=worker.status == "spawning",
                    )
                )
            continue
        if worker.pod_id is None:
            actions.append(AttachPod(worker.id, pod.id))
        if not pod.live:
            ending.add(worker.id)
            actions.append(
                Retire(
                    worker.id,
                    pod.id,
                    status="error",
                    cause="pod_dead",
                    reason=f"pod is {pod.status} at the provider",
                    start_failed=worker.status == "spawning",
                )
            )
    for pod in fleet:
        if pod.id in explained or pod.status == "TERMINATED":
            continue
        actions.append(
            TerminatePod(pod.id, pod.name, reason="fleet pod that no live worker row explains")
        )
    return actions


def _spawn_room(
    snap: Snapshot,
    settings: Settings,
    limits: Limits,
    live_count: int,
    live_burn: float,
    starting: int,
) -> tuple[int, str]:
    room = settings.max_active_gpus - live_count - limits.unconfirmed_pods
    why = "MAX_ACTIVE_GPUS"
    if limits.start_failures >= START_FAILURES_BEFORE_PROBING and 1 - starting < room:
        # Pods keep failing to start: one probe at a time until a worker starts again.
        room, why = 1 - starting, f"{limits.start_failures} workers in a row never started"
    if settings.max_hourly_spend_usd is not None and limits.expected_price > 0:
        # Compared as a float first: a tiny catalog price makes the quotient inf, which
        # math.floor refuses.
        affordable = (settings.max_hourly_spend_usd - live_burn) / limits.expected_price + 1e-9
        if affordable < room:
            room, why = math.floor(affordable), "MAX_HOURLY_SPEND_USD"
    if limits.spawn_blocked_until is not None and snap.now < limits.spawn_blocked_until:
        room, why = 0, limits.spawn_blocked_reason or "spawn backoff"
    return max(room, 0), why


def _scale(
    snap: Snapshot, settings: Settings, limits: Limits, ending: set[str], draining: set[str]
) -> list[Action]:
    live = [w for w in snap.workers if w.id not in ending]
    capacity = [w for w in live if w.status in ("spawning", "active") and w.id not in draining]
    desired = desired_workers(snap, settings)
    demand = snap.demand
    if len(capacity) < desired:
        burn = sum(w.cost_per_hr for w in live)
        starting = sum(1 for w in live if w.status == "spawning")
        room, _ = _spawn_room(snap, settings, limits, len(live), burn, starting)
        count = min(desired - len(capacity), room)
        reason = f"{demand} tasks need {desired} workers, {len(capacity)} live"
        return [Spawn(reason=reason) for _ in range(count)]
    if len(capacity) == desired:
        return []
    idle_limit = _sec(settings.scale_down_idle_sec)
    idle = sorted(
        (
            w
            for w in capacity
            if w.status == "active"
            and not snap.tasks_of(w.id)
            and snap.now - w.idle_since >= idle_limit
        ),
        key=lambda w: w.idle_since,
    )
    excess = len(capacity) - desired
    return [
        Drain(
            w.id,
            reason=f"idle {int((snap.now - w.idle_since).total_seconds())}s; "
            f"{demand} tasks need {desired} workers",
        )
        for w in idle[:excess]
    ]


def decide(snap: Snapshot, settings: Settings, limits: Limits | None = None) -> list[Action]:
    limits = limits or Limits()
    actions: list[Action] = []
    ending: set[str] = set()
    ended_pods: set[str] = set()
    for worker in snap.workers:
        action = _recover(worker, snap, settings)
        if action is not None:
            actions.append(action)
            ending.add(worker.id)
            if worker.pod_id:
                ended_pods.add(worker.pod_id)
    draining: set[str] = set()
    actions += _stuck_tasks(snap, settings, ending, draining)
    actions += _orphaned_tasks(snap)
    if snap.pods is not None:
        actions += _reconcile_pods(snap, settings, ending, ended_pods)
    actions += _scale(snap, settings, limits, ending, draining)
    return actions


def next_deadline(
    snap: Snapshot, settings: Settings, limits: Limits | None = None
) -> datetime | None:
    """The earliest future moment at which ``decide`` could answer differently."""
    limits = limits or Limits()
    moments: list[datetime] = []
    for worker in snap.workers:
        if worker.status == "spawning":
            moments.append(worker.created_at + _sec(settings.spawning_timeout_sec))
            continue
        moments.append(_last_sign_of_life(worker) + _sec(settings.gpu_idle_timeout_sec))
        if worker.status == "terminating":
            since = worker.draining_since or worker.created_at
            moments.append(since + _sec(settings.graceful_shutdown_timeout_sec))
        elif not snap.tasks_of(worker.id):
            moments.append(worker.idle_since + _sec(settings.scale_down_idle_sec))
    for task in snap.running:
        if task.started_at is not None:
            moments.append(task.started_at + _sec(settings.task_stuck_timeout_sec))
    if snap.next_retry_at is not None:
        moments.append(snap.next_retry_at)  # a waiting task becomes demand
    if limits.spawn_blocked_until is not None:
        moments.append(limits.spawn_blocked_until)
    if limits.terminate_retry_at is not None:
        moments.append(limits.terminate_retry_at)
    future = [m for m in moments if m > snap.now]
    return min(future) if future else None
