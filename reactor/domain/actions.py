"""What the policy decides: one dataclass per action, carried out by the engine's executor."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Spawn:
    reason: str
    kind: str = field(default="spawn", init=False)


@dataclass(frozen=True)
class Drain:
    worker_id: str
    reason: str
    kind: str = field(default="drain", init=False)


@dataclass(frozen=True)
class Retire:
    """End a worker: mark its row, requeue its tasks, terminate its pod."""

    worker_id: str
    pod_id: str | None
    reason: str
    status: str  # 'terminated' (clean end) or 'error'
    cause: str  # bounded metric label: drained, drain_timeout, heartbeat, spawn_timeout, ...
    start_failed: bool = False  # its pod never got as far as a first heartbeat
    kind: str = field(default="retire", init=False)


@dataclass(frozen=True)
class RequeueTask:
    task_id: str
    worker_id: str
    attempt: int
    reason: str
    kind: str = field(default="requeue_task", init=False)


@dataclass(frozen=True)
class RequeueOrphans:
    worker_ids: tuple[str, ...]
    reason: str
    kind: str = field(default="requeue_orphans", init=False)


@dataclass(frozen=True)
class TerminatePod:
    """A fleet pod that no live worker row explains."""

    pod_id: str
    pod_name: str
    reason: str
    kind: str = field(default="terminate_pod", init=False)


@dataclass(frozen=True)
class AttachPod:
    """A spawn intent whose create answer was lost: the pod is found by name."""

    worker_id: str
    pod_id: str
    kind: str = field(default="attach_pod", init=False)


Action = Spawn | Drain | Retire | RequeueTask | RequeueOrphans | TerminatePod | AttachPod
