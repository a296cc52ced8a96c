"""The deciding part of the reactor: pure functions, no I/O, no clock.

``decide(snapshot, settings, limits)`` returns the actions that bring the fleet in line
with the queue; ``next_deadline`` says when, absent any event, the answer could change.
``snapshot.now`` is the database's clock, so every comparison uses one time source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from reactor.domain import breakeven, rules
from reactor.domain.actions import (
    Action,
    AttachPod,
    Cause,
    Drain,
    RequeueOrphans,
    RequeueTask,
    Retire,
    Spawn,
    TerminatePod,
)
from reactor.domain.model import (
    CAPACITY_STATUSES,
    Limits,
    Snapshot,
    WorkerState,
    WorkerStatus,
)
from reactor.domain.rules import desired_workers
from reactor.domain.spawn_gate import START_FAILURES_BEFORE_PROBING
from reactor.settings import Settings

_DRAINING = WorkerStatus.TERMINATING
# A pod just created may take a moment to show in the provider's list.
POD_LIST_GRACE = timedelta(seconds=60)


def _recover(
    worker: WorkerState, judged: rules.WorkerVerdicts, snap: Snapshot, settings: Settings
) -> Retire | None:
    """Dead, overdue or drained workers: the action that ends them, if any. ``judged`` are
    the rules' verdicts on the worker."""
    now = snap.now
    if judged.spawn.breached:
        return Retire(
            worker.id,
            worker.pod_id,
            status=WorkerStatus.ERROR,
            cause=Cause.SPAWN_TIMEOUT,
            reason=f"no heartbeat {settings.spawning_timeout_sec:g}s after spawn "
            f"(SPAWNING_TIMEOUT_SEC)",
            start_failed=True,
        )
    if judged.heartbeat.breached:
        silent = now - rules.last_sign_of_life(worker)
        return Retire(
            worker.id,
            worker.pod_id,
            status=WorkerStatus.ERROR,
            cause=Cause.HEARTBEAT,
            reason=f"heartbeat stale for {silent.total_seconds():.0f}s "
            f"(GPU_IDLE_TIMEOUT_SEC={settings.gpu_idle_timeout_sec:g})",
        )
    if worker.status != WorkerStatus.TERMINATING:
        return None
    if not snap.tasks_of(worker.id):
        return Retire(
            worker.id,
            worker.pod_id,
            status=WorkerStatus.TERMINATED,
            cause=Cause.DRAINED,
            reason="drained: no task in progress",
        )
    if judged.drain.breached:
        return Retire(
            worker.id,
            worker.pod_id,
            status=WorkerStatus.TERMINATED,
            cause=Cause.DRAIN_TIMEOUT,
            reason=f"drain limit of {settings.graceful_shutdown_timeout_sec:g}s passed "
            f"with a task in progress (GRACEFUL_SHUTDOWN_TIMEOUT_SEC)",
        )
    return None


def _recoveries(snap: Snapshot, settings: Settings) -> list[Retire]:
    """One Retire for each worker that is dead, overdue or drained."""
    judged = rules.judge(snap, settings).workers
    return [
        r
        for w in snap.workers
        # Most workers are healthy and not draining: _recover would end them with None.
        if ((j := judged[w.id]).spawn.breached or j.heartbeat.breached or w.status == _DRAINING)
        and (r := _recover(w, j, snap, settings)) is not None
    ]


def _stuck_tasks(snap: Snapshot, settings: Settings, ending: frozenset[str]) -> list[Action]:
    """Requeue each task stuck on a worker not already ending, and drain its worker."""
    actions: list[Action] = []
    draining: set[str] = set()
    for task, stuck in zip(snap.running, rules.judge(snap, settings).tasks, strict=True):
        if task.worker_id is None or task.worker_id in ending:
            continue
        if not stuck.breached:
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
        if (
            worker is not None
            and worker.status == WorkerStatus.ACTIVE
            and worker.id not in draining
        ):
            draining.add(worker.id)
            actions.append(Drain(worker.id, reason="its task was stuck", cause=Cause.STUCK))
    return actions


def orphaned_tasks(snap: Snapshot) -> list[Action]:
    """One requeue of the tasks held by workers that are no longer live."""
    live = {w.id for w in snap.workers}
    lost = sorted({t.worker_id or "" for t in snap.running if t.worker_id not in live})
    if not lost:
        return []
    return [RequeueOrphans(tuple(lost), reason="task held by a worker that is no longer live")]


def _lost_pod(worker: WorkerState) -> Retire:
    """A worker old enough to be listed whose pod the provider does not list."""
    if worker.pod_id is None:
        return Retire(
            worker.id,
            None,
            status=WorkerStatus.ERROR,
            cause=Cause.CREATE_LOST,
            reason="no pod was ever created for this worker",
        )
    return Retire(
        worker.id,
        None,
        status=WorkerStatus.ERROR,
        cause=Cause.POD_MISSING,
        reason=f"pod {worker.pod_id} no longer exists at the provider",
        start_failed=worker.status == WorkerStatus.SPAWNING,
    )


def _reconcile_pods(
    snap: Snapshot, settings: Settings, ending: frozenset[str], ended_pods: frozenset[str]
) -> list[Action]:
    """Compare the provider's fleet pods with the live rows (sweep only). ``ending`` are
    the workers already being retired, ``ended_pods`` their pods (terminated with them)."""
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
        if pod is None:
            if snap.now - worker.created_at >= POD_LIST_GRACE:
                actions.append(_lost_pod(worker))
            continue
        if worker.pod_id is None:
            actions.append(AttachPod(worker.id, pod.id))
        if not pod.live:
            actions.append(
                Retire(
                    worker.id,
                    pod.id,
                    status=WorkerStatus.ERROR,
                    cause=Cause.POD_DEAD,
                    reason=f"pod is {pod.status} at the provider",
                    start_failed=worker.status == WorkerStatus.SPAWNING,
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


def scale(
    snap: Snapshot,
    settings: Settings,
    limits: Limits,
    ending: frozenset[str],
    draining: frozenset[str],
    *,
    pool: str | None = None,
    fleet_room: int | None = None,
) -> list[Action]:
    """Spawn up to the workers the queue calls for, or drain the idle excess. ``ending``
    are the workers being retired, ``draining`` those the earlier steps drain; spawns
    are for ``pool``, and no more than ``fleet_room`` (the fleet's, with GPU pools)."""
    live = [w for w in snap.workers if w.id not in ending]
    capacity = [w for w in live if w.status in CAPACITY_STATUSES and w.id not in draining]
    desired = desired_workers(snap, settings)
    demand = rules.gpu_demand(snap, settings)
    if len(capacity) < desired:
        burn = sum(w.cost_per_hr for w in live)
        starting = sum(1 for w in live if w.status == WorkerStatus.SPAWNING)
        room, _ = _spawn_room(snap, settings, limits, len(live), burn, starting)
        count = min(desired - len(capacity), room)
        if fleet_room is not None:
            count = min(count, max(fleet_room, 0))
        reason = f"{demand} tasks need {desired} workers, {len(capacity)} live"
        return [Spawn(reason=reason, cause=Cause.SCALE_UP, pool=pool) for _ in range(count)]
    if len(capacity) == desired:
        return []
    judged = rules.judge(snap, settings).workers
    idle = sorted(
        (w for w in capacity if judged[w.id].idle.breached),
        key=lambda w: w.idle_since,
    )
    excess = len(capacity) - desired
    return [
        Drain(
            w.id,
            reason=f"idle {int((snap.now - w.idle_since).total_seconds())}s; "
            f"{demand} tasks need {desired} workers",
            cause=Cause.IDLE,
        )
        for w in idle[:excess]
    ]


def retired(actions: Sequence[Action]) -> frozenset[str]:
    """The workers ``actions`` retire."""
    return frozenset(a.worker_id for a in actions if isinstance(a, Retire))


def drained(actions: Sequence[Action]) -> frozenset[str]:
    """The workers ``actions`` drain."""
    return frozenset(a.worker_id for a in actions if isinstance(a, Drain))


def health(snap: Snapshot, settings: Settings) -> tuple[list[Retire], list[Action]]:
    """The first steps: the workers that are dead, overdue or drained, and the tasks stuck
    on the others (requeued, their workers drained)."""
    recovered = _recoveries(snap, settings)
    return recovered, _stuck_tasks(snap, settings, retired(recovered))


def sweep(snap: Snapshot, settings: Settings, recovered: Sequence[Retire]) -> list[Action]:
    """The sweep's pod checks (only when the snapshot holds the provider's pods), leaving
    alone the workers ``recovered`` ends and their pods."""
    if snap.pods is None:
        return []
    ended_pods = frozenset(r.pod_id for r in recovered if r.pod_id)
    return _reconcile_pods(snap, settings, retired(recovered), ended_pods)


def decide(snap: Snapshot, settings: Settings, limits: Limits | None = None) -> list[Action]:
    """The actions, in order: recoveries, stuck and orphaned tasks, the sweep's pod checks,
    then scaling. Each step returns its actions; the workers they retire or drain are read
    from those actions and handed on to the steps that must leave them alone. (With GPU
    pools, reactor.domain.fleet runs the same steps per pool.)"""
    limits = limits or Limits()
    recovered, stuck = health(snap, settings)
    orphaned = orphaned_tasks(snap)
    swept = sweep(snap, settings, recovered)
    scaled = scale(snap, settings, limits, retired([*recovered, *swept]), drained(stuck))
    return [*recovered, *stuck, *orphaned, *swept, *scaled]


def next_deadline(
    snap: Snapshot, settings: Settings, limits: Limits | None = None
) -> datetime | None:
    """The earliest future moment at which ``decide`` could answer differently: a timeout
    rule's deadline, a waiting task falling due, or the end of a limit the executor set.
    The pods' list grace is not among them: pods are only in a sweep's snapshot."""
    limits = limits or Limits()
    # Each verdict's changes_at, inlined (its deadline until it is breached): this runs
    # over every worker after every reconcile.
    judged = rules.judge(snap, settings)
    moments = [v.deadline for w in judged.workers.values() for v in w if not v.breached]
    moments += [v.deadline for v in judged.tasks if not v.breached]
    moments += [snap.next_retry_at, limits.spawn_blocked_until, limits.terminate_retry_at]
    moments.append(breakeven.rate_changes_at(snap, settings))  # a re-read (break-even)
    future = [m for m in moments if m is not None and m > snap.now]
    return min(future) if future else None
