"""Plain data the policy decides on, and the actions it decides.

Nothing here does I/O. A Snapshot is one consistent read of the database (plus, on a
sweep, the provider's pod list); actions are carried out by reactor.engine.executor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from reactor.domain.pods import Pod

T = TypeVar("T")


class WorkerStatus(StrEnum):
    """A worker row's ``status`` (the workers_status_check constraint allows these five)."""

    SPAWNING = "spawning"  # the reactor wrote the intent; no heartbeat yet
    ACTIVE = "active"  # heartbeating; claims tasks
    TERMINATING = "terminating"  # draining: finishes its task, claims no other
    TERMINATED = "terminated"  # ended cleanly
    ERROR = "error"  # ended by a failure (no heartbeat, pod gone, ...)


# A worker the reactor still manages and pays for: the rows a snapshot reads.
LIVE_STATUSES = frozenset({WorkerStatus.SPAWNING, WorkerStatus.ACTIVE, WorkerStatus.TERMINATING})
# A live worker that is not draining: it counts toward the workers the queue calls for.
CAPACITY_STATUSES = frozenset({WorkerStatus.SPAWNING, WorkerStatus.ACTIVE})


@dataclass(frozen=True)
class WorkerState:
    id: str
    status: WorkerStatus
    created_at: datetime
    pod_id: str | None = None
    managed: bool = True
    pool: str | None = None  # its GPU pool (workers.pool); None: from before pools
    gpu_type: str | None = None
    cost_per_hr: float = 0.0
    activated_at: datetime | None = None
    last_heartbeat: datetime | None = None
    draining_since: datetime | None = None
    last_task_finished_at: datetime | None = None
    drained_at: datetime | None = None

    @property
    def idle_since(self) -> datetime:
        """When the worker last became free: its activation or its last task's end."""
        active, finished = self.activated_at, self.last_task_finished_at
        if active is None or finished is None:
            return active or finished or self.created_at
        return finished if finished > active else active


@dataclass(frozen=True)
class TaskState:
    id: str
    worker_id: str | None
    attempts: int
    started_at: datetime | None
    task_type: str | None = None


@dataclass(frozen=True)
class Snapshot:
    now: datetime
    queued: int
    in_progress: int
    workers: tuple[WorkerState, ...] = ()
    running: tuple[TaskState, ...] = ()
    oldest_queued_at: datetime | None = None
    pods: tuple[Pod, ...] | None = None  # the fleet's pods; only on a sweep
    waiting: int = 0  # of the queued, those waiting out a retry delay (not yet claimable)
    next_retry_at: datetime | None = None  # when the first of those is due
    # Of the other queued, those no worker of the fleet could claim now (each in one):
    other_types: int = 0  # of a task type the fleet does not run
    blocked_for_good: int = 0  # a dependency Failed, was Cancelled or is missing
    blocked_waiting: int = 0  # a dependency is not Complete yet
    demand_sql: int | None = None  # DEMAND_SQL's answer, where the database has the rule
    # Claimable Queued tasks per task type, whatever the fleet runs (read with pools or
    # TASK_TYPES: how demand is routed, and what no pool runs).
    ready_by_type: tuple[tuple[str | None, int], ...] | None = None
    routed_demand: int | None = None  # one pool's part: the demand routed to it
    # The answers of the pools' own demand queries (demand_sql in POOLS_FILE), by pool.
    pool_demand: tuple[tuple[str, int], ...] = ()
    # Tasks inserted in the breakeven.ARRIVAL_WINDOW_SEC before the read and the oldest of
    # them (the count can drop from its insert + the window on): the break-even rule's rate.
    arrivals: int = 0
    arrivals_since: datetime | None = None

    @property
    def claimable(self) -> int:
        """Queued tasks a worker of the fleet could claim now."""
        return (
            self.queued
            - self.waiting
            - self.other_types
            - self.blocked_for_good
            - self.blocked_waiting
        )

    @property
    def demand(self) -> int:
        """Tasks that need a worker now: claimable Queued ones and In Progress ones - or,
        where DEMAND_SQL says, what it answered; in one pool's part of a snapshot, the
        demand routed to that pool."""
        if self.routed_demand is not None:
            return self.routed_demand
        if self.demand_sql is not None:
            return self.demand_sql
        return self.claimable + self.in_progress

    # Indexes over ``workers`` and ``running``, built once in __post_init__ (the snapshot is
    # frozen, so they cannot drift): ``worker`` and ``tasks_of`` are then O(1), and one
    # decide is linear in the fleet, not quadratic.
    _workers_by_id: dict[str, WorkerState] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _tasks_by_worker: dict[str, tuple[TaskState, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    # What the rules derive from this snapshot and one Settings (see ``derived``).
    _memo: dict[str, tuple[object, Any]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def derived(self, name: str, settings: object, compute: Callable[[], T]) -> T:
        """``compute()``, once per snapshot, ``name`` and ``settings`` object: the rules'
        verdicts are derived once and shared by decide and next_deadline. The snapshot is
        frozen, so what is derived from it cannot go stale."""
        hit = self._memo.get(name)
        if hit is not None and hit[0] is settings:
            return hit[1]  # type: ignore[no-any-return]
        value = compute()
        self._memo[name] = (settings, value)
        return value

    def __post_init__(self) -> None:
        by_id: dict[str, WorkerState] = {}
        for w in self.workers:
            by_id.setdefault(w.id, w)  # the first, as a scan would find
        grouped: dict[str, list[TaskState]] = {}
        for t in self.running:
            if t.worker_id is not None:
                grouped.setdefault(t.worker_id, []).append(t)
        object.__setattr__(self, "_workers_by_id", by_id)
        object.__setattr__(self, "_tasks_by_worker", {k: tuple(v) for k, v in grouped.items()})

    def worker(self, worker_id: str) -> WorkerState | None:
        return self._workers_by_id.get(worker_id)

    def tasks_of(self, worker_id: str) -> list[TaskState]:
        return list(self._tasks_by_worker.get(worker_id, ()))

    @property
    def hourly_burn(self) -> float:
        return sum(w.cost_per_hr for w in self.workers)


@dataclass(frozen=True)
class Limits:
    """What the spawn gate knows that the database does not (reactor.domain.spawn_gate)."""

    expected_price: float = 0.0  # USD/hour of one new worker
    spawn_blocked_until: datetime | None = None
    spawn_blocked_reason: str | None = None
    unconfirmed_pods: int = 0  # pods whose terminate has not succeeded yet
    terminate_retry_at: datetime | None = None  # when those terminates are tried again
    start_failures: int = 0  # workers in a row that never started (the gate's breaker)
    # The pause is this pool's own trouble (no capacity on any of its GPU types, a create
    # refused, pods that do not start), not the account's (a rate limit, the balance):
    # demand it cannot take spills over to the next pool (reactor.domain.routing).
    pool_unavailable: bool = False
