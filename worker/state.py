"""What the worker's tasks share: the task in hand, the counters and the stop requests.

Two levels of stopping:

* ``draining`` - claim nothing new, finish the task in hand, report drained, exit. Set by
  a signal (with a grace deadline) or by the heartbeat's answer (no deadline of our own:
  the reactor's drain limit applies).
* ``forced`` - stop the task in hand now and fail it back to the queue. Set by a second
  signal or when the grace period runs out.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskInHand:
    id: uuid.UUID
    task_type: str
    attempt: int
    started_at: float = field(default_factory=time.time)


@dataclass
class WorkerState:
    worker_id: str
    current: TaskInHand | None = None
    completed: int = 0
    failed: int = 0
    lease_lost: int = 0
    drain_reason: str | None = None
    force_reason: str | None = None
    stop_signal: str | None = None
    grace_deadline: float | None = None  # monotonic; only once a signal asked to stop
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    forced: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def phase(self) -> str:
        if self.current is not None:
            return "draining" if self.draining.is_set() else "busy"
        return "draining" if self.draining.is_set() else "idle"

    def drain(self, reason: str, *, grace: float | None = None) -> None:
        """Claim nothing more; with ``grace``, the task in hand has that long to finish."""
        if grace is not None:
            deadline = time.monotonic() + grace
            if self.grace_deadline is None or deadline < self.grace_deadline:
                self.grace_deadline = deadline
        if self.draining.is_set():
            return
        self.drain_reason = reason
        self.draining.set()
        log.info(
            "drain_requested",
            extra={
                "worker_id": self.worker_id,
                "reason": reason,
                "task_id": str(self.current.id) if self.current else None,
                "grace_sec": grace,
            },
        )

    def force(self, reason: str) -> None:
        """Give up the task in hand now (it is failed back to the queue)."""
        self.drain(reason, grace=0)
        if self.forced.is_set():
            return
        self.force_reason = reason
        self.forced.set()
        log.warning(
            "stop_forced",
            extra={
                "worker_id": self.worker_id,
                "reason": reason,
                "task_id": str(self.current.id) if self.current else None,
            },
        )

    def stopped_message(self) -> str:
        """The error_message of a task failed back because the worker stopped."""
        cause = self.stop_signal or self.drain_reason or "stop"
        return f"worker stopped ({cause}) before finishing: {self.force_reason or 'forced'}"

    def snapshot(self) -> dict[str, object]:
        """Heartbeat fields about the work (never a task's params)."""
        current = self.current
        return {
            "state": self.phase,
            "current_task_id": str(current.id) if current else None,
            "current_task_type": current.task_type if current else None,
            "current_task_attempt": current.attempt if current else None,
            "current_task_started_at": round(current.started_at, 3) if current else None,
            "tasks_completed": self.completed,
            "tasks_failed": self.failed,
            "leases_lost": self.lease_lost,
        }
