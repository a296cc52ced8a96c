"""The last hour of what the reconciles saw, kept in memory for the web console.

Every reconcile hands its snapshot to ``History.add`` (reactor/engine/reconcile.py,
``record``): the queue, the workers by status and the hourly burn go into a ring buffer
of one point per ``BUCKET_SEC`` (each the highest value seen in its bucket, so a burst
worked off within a few seconds still shows); the tasks In Progress are noted with the
worker and attempt that held them; a sweep's pod list is kept until the next sweep. The
console's charts and drill-down pages read these: no viewer reads the database for them,
and nothing here decides anything.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reactor.domain.model import Snapshot, WorkerStatus
from reactor.domain.pods import Pod

BUCKET_SEC = 5.0  # one chart point per this many seconds
WINDOW_SEC = 3600.0  # how far back the charts go
TASKS_REMEMBERED = 5000  # tasks whose holders are kept (the most recently changed)


@dataclass(frozen=True, slots=True)
class Sample:
    """One bucket of the charts; ``at`` is the bucket's start (unix seconds)."""

    at: float
    queued: int  # every Queued task
    due: int  # of the queued, those claimable now (not waiting out a retry delay)
    in_progress: int
    spawning: int
    active: int
    terminating: int
    usd_per_hour: float

    def as_list(self) -> list[float]:
        """The wire form the console's charts read (see ``FIELDS``)."""
        return [
            self.at,
            self.queued,
            self.due,
            self.in_progress,
            self.spawning,
            self.active,
            self.terminating,
            round(self.usd_per_hour, 4),
        ]


FIELDS = ("at", "queued", "due", "in_progress", "spawning", "active", "terminating", "usd_per_hour")


@dataclass(frozen=True, slots=True)
class Holding:
    """A task seen In Progress on a worker, as a snapshot showed it."""

    worker_id: str
    attempt: int
    started_at: datetime | None
    first_seen: float  # unix time of the reconcile that first saw it


def _sample(snap: Snapshot, at: float) -> Sample:
    by_status = {s: 0 for s in WorkerStatus}
    for w in snap.workers:
        by_status[w.status] += 1
    return Sample(
        at=at,
        queued=snap.queued,
        due=max(snap.queued - snap.waiting, 0),
        in_progress=snap.in_progress,
        spawning=by_status[WorkerStatus.SPAWNING],
        active=by_status[WorkerStatus.ACTIVE],
        terminating=by_status[WorkerStatus.TERMINATING],
        usd_per_hour=snap.hourly_burn,
    )


def _highest(a: Sample, b: Sample) -> Sample:
    return Sample(
        at=a.at,
        queued=max(a.queued, b.queued),
        due=max(a.due, b.due),
        in_progress=max(a.in_progress, b.in_progress),
        spawning=max(a.spawning, b.spawning),
        active=max(a.active, b.active),
        terminating=max(a.terminating, b.terminating),
        usd_per_hour=max(a.usd_per_hour, b.usd_per_hour),
    )


class History:
    """A ring buffer of ``Sample``s over ``window_sec`` and who held which task."""

    def __init__(
        self,
        *,
        bucket_sec: float = BUCKET_SEC,
        window_sec: float = WINDOW_SEC,
        tasks_remembered: int = TASKS_REMEMBERED,
    ) -> None:
        self.bucket_sec = bucket_sec
        self.window_sec = window_sec
        self._samples: deque[Sample] = deque(maxlen=int(window_sec // bucket_sec) + 1)
        self._holders: OrderedDict[str, list[Holding]] = OrderedDict()
        self._tasks_remembered = tasks_remembered
        self.version = 0  # counts the snapshots added (a change marker for readers)
        self.pods: dict[str, Pod] = {}  # the provider's pods at the last sweep, by id
        self.pods_at: float | None = None  # unix time of that sweep

    def add(self, snap: Snapshot, at: float) -> None:
        """One reconcile's snapshot, recorded at unix time ``at``."""
        bucket = at - at % self.bucket_sec
        sample = _sample(snap, bucket)
        last = self._samples[-1] if self._samples else None
        if last is not None and last.at == bucket:
            self._samples[-1] = _highest(last, sample)
        elif last is None or bucket > last.at:
            self._samples.append(sample)
        self._note_holders(snap, at)
        if snap.pods is not None:
            self.pods, self.pods_at = {p.id: p for p in snap.pods}, at
        self.version += 1

    def _note_holders(self, snap: Snapshot, at: float) -> None:
        for task in snap.running:
            if task.worker_id is None:
                continue
            seen = self._holders.get(task.id)
            if seen and seen[-1].worker_id == task.worker_id and seen[-1].attempt == task.attempts:
                continue
            holding = Holding(task.worker_id, task.attempts, task.started_at, at)
            if seen is None:
                self._holders[task.id] = [holding]
                if len(self._holders) > self._tasks_remembered:
                    self._holders.popitem(last=False)
            else:
                seen.append(holding)
                self._holders.move_to_end(task.id)

    def samples(self, now: float, *, last: int | None = None) -> list[Sample]:
        """The samples of the last ``window_sec`` before ``now`` (only the ``last`` few)."""
        start = now - self.window_sec
        points = [s for s in self._samples if s.at >= start]
        return points[-last:] if last else points

    def holders(self, task_id: str) -> list[Holding]:
        """The workers this reactor saw holding ``task_id``, oldest first."""
        return list(self._holders.get(task_id, ()))

    def tasks_held_by(self, worker_id: str) -> list[tuple[str, Holding]]:
        """The tasks this reactor saw ``worker_id`` hold, most recently changed first."""
        found = []
        for task_id, holdings in reversed(self._holders.items()):
            found += [(task_id, h) for h in holdings if h.worker_id == worker_id]
        return found

    def wire(self, now: float, *, last: int | None = None) -> dict[str, Any]:
        """The charts' data as the console's events carry it."""
        return {
            "bucket_sec": self.bucket_sec,
            "window_sec": self.window_sec,
            "fields": FIELDS,
            "points": [s.as_list() for s in self.samples(now, last=last)],
        }
