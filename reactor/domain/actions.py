"""What the policy decides: one dataclass per action, carried out by the engine's executor.

Every action carries a ``cause``: why it was decided, from a bounded set (it is the
``reason`` label of gpu_reactor_terminations_total and gpu_reactor_tasks_requeued_total),
and a free-text ``reason`` for people (it may embed ages and counts). Actions decided for
one cause only default to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from reactor.domain.model import WorkerStatus


class Cause(StrEnum):
    """Why an action was decided. Bounded: a metric label; the values are stable."""

    SCALE_UP = "scale_up"  # spawn: the queue calls for more workers
    IDLE = "idle"  # drain: more workers than the queue calls for, this one idle long enough
    STUCK = "stuck"  # requeue a task In Progress too long, and drain its worker
    OPERATOR = "operator"  # asked for by a person (CLI, NOTIFY drain)
    HEARTBEAT = "heartbeat"  # retire: no sign of life within GPU_IDLE_TIMEOUT_SEC
    SPAWN_TIMEOUT = "spawn_timeout"  # retire: no first heartbeat within SPAWNING_TIMEOUT_SEC
    DRAINED = "drained"  # retire: a draining worker finished its last task
    DRAIN_TIMEOUT = "drain_timeout"  # retire: GRACEFUL_SHUTDOWN_TIMEOUT_SEC passed draining
    CREATE_LOST = "create_lost"  # retire: no pod was ever created for the intent
    POD_MISSING = "pod_missing"  # retire: the worker's pod is gone at the provider
    POD_DEAD = "pod_dead"  # retire: the worker's pod exited at the provider
    STRAY_POD = "stray_pod"  # terminate a fleet pod no live worker row explains
    ORPHANED = "orphaned"  # requeue tasks held by workers that are no longer live
    POD_FOUND = "pod_found"  # attach a pod found by name to an intent whose create was lost
    POOL_REMOVED = "pool_removed"  # drain: the worker's pool is no longer in POOLS_FILE


@dataclass(frozen=True)
class Spawn:
    reason: str
    cause: Cause  # SCALE_UP or OPERATOR
    pool: str | None = None  # the GPU pool it is for (None: the only one)
    kind: str = field(default="spawn", init=False)


@dataclass(frozen=True)
class Drain:
    worker_id: str
    reason: str
    cause: Cause  # IDLE, STUCK, OPERATOR or POOL_REMOVED
    kind: str = field(default="drain", init=False)


@dataclass(frozen=True)
class Retire:
    """End a worker: mark its row, requeue its tasks, terminate its pod."""

    worker_id: str
    pod_id: str | None
    reason: str
    status: WorkerStatus  # TERMINATED (clean end) or ERROR
    cause: Cause
    start_failed: bool = False  # its pod never got as far as a first heartbeat
    pool: str | None = None  # the worker's GPU pool (whose spawn gate learns of it)
    kind: str = field(default="retire", init=False)


@dataclass(frozen=True)
class RequeueTask:
    task_id: str
    worker_id: str
    attempt: int
    reason: str
    cause: Cause = Cause.STUCK
    kind: str = field(default="requeue_task", init=False)


@dataclass(frozen=True)
class RequeueOrphans:
    worker_ids: tuple[str, ...]
    reason: str
    cause: Cause = Cause.ORPHANED
    kind: str = field(default="requeue_orphans", init=False)


@dataclass(frozen=True)
class TerminatePod:
    """A fleet pod that no live worker row explains."""

    pod_id: str
    pod_name: str
    reason: str
    cause: Cause = Cause.STRAY_POD
    kind: str = field(default="terminate_pod", init=False)


@dataclass(frozen=True)
class AttachPod:
    """A spawn intent whose create answer was lost: the pod is found by name."""

    worker_id: str
    pod_id: str
    cause: Cause = Cause.POD_FOUND
    kind: str = field(default="attach_pod", init=False)


Action = Spawn | Drain | Retire | RequeueTask | RequeueOrphans | TerminatePod | AttachPod
