"""Scale-down by break-even (SCALE_DOWN_POLICY=break-even): how long an idle worker is kept.

Letting an idle GPU go and starting another when the next task comes costs a pod start-up
twice: the new pod's start-up is billed, and the task waits through it. Keeping the GPU
costs its price for as long as it stays idle. So, as in ski rental, a kept GPU is worth
at most one start-up of idle time; and it is worth keeping at all only if the next task
is likely to come within that time. The rule reads both from the fleet itself:

- the start-up time: the mean of the live workers' own (first heartbeat - create), or
  POD_STARTUP_ESTIMATE_SEC while no live worker has measured one;
- the arrival rate: the tasks inserted in the last ARRIVAL_WINDOW_SEC (Snapshot.arrivals).

With N, the tasks that arrive within one start-up, a Poisson count of mean rate x
start-up, the j-th idle worker is needed in that time with probability P(N >= j). A
second a task waits is weighed as one GPU-second: keeping the worker saves, if it is
needed, two start-ups (one billed, one waited) and costs at most one of idle time, so it
pays when P(N >= j) >= 1/2. The idle workers kept are the median of N, the most
recently freed first, each for one start-up (never longer than SCALE_DOWN_IDLE_SEC);
every other idle worker above what the queue needs is drained at once. When arrivals
stop, the count drops as they leave the window, and so does the number kept: the reactor
re-reads at ``rate_changes_at``. Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from reactor.domain.model import Snapshot, WorkerStatus
from reactor.settings import Settings

ARRIVAL_WINDOW_SEC = 300.0  # the arrival rate is the tasks inserted in this window ...
ARRIVALS_COUNTED = 10_000  # ... reading at most these rows touched in it (a lower bound)
_ZERO = timedelta(0)


def startup_estimate(snap: Snapshot, settings: Settings) -> float:
    """Seconds from create to first heartbeat: the live workers' mean, else the setting."""
    total, count = 0.0, 0
    for w in snap.workers:
        if w.activated_at is not None and w.managed:
            total += max((w.activated_at - w.created_at).total_seconds(), 0.0)
            count += 1
    return total / count if count else settings.pod_startup_estimate_sec


def arrival_rate(snap: Snapshot) -> float:
    """Tasks inserted per second, over the last ARRIVAL_WINDOW_SEC."""
    return snap.arrivals / ARRIVAL_WINDOW_SEC


def worth_keeping(expected: float) -> int:
    """How many idle workers to keep when ``expected`` tasks arrive within a start-up: the
    largest j with P(N >= j) >= 1/2 for N Poisson of that mean (its median). Past a mean
    of 100, floor(mean), within one of it (the median lies in [mean - ln 2, mean + 1/3])."""
    if expected <= 0:
        return 0
    if expected > 100:
        return math.floor(expected)
    pmf = math.exp(-expected)
    below = pmf  # P(N <= j) for j = 0
    j = 0
    while below < 0.5:  # P(N >= j + 1) = 1 - P(N <= j) > 1/2: the (j+1)-th is kept
        j += 1
        pmf *= expected / j
        below += pmf
    # below >= 1/2 now: P(N >= j + 1) <= 1/2; keep j + 1 only at exactly a half.
    return j + 1 if below == 0.5 else j


def keep_windows(snap: Snapshot, settings: Settings) -> dict[str, timedelta] | None:
    """Under break-even, how long each idle active worker may stay idle before it may be
    drained: one start-up (at most SCALE_DOWN_IDLE_SEC) for the workers worth keeping,
    the most recently freed first; none for the others. None under the fixed policy
    (SCALE_DOWN_IDLE_SEC for every worker). Derived once per snapshot and settings."""
    if settings.scale_down_policy != "break-even":
        return None

    def compute() -> dict[str, timedelta]:
        idle = [
            w for w in snap.workers if w.status == WorkerStatus.ACTIVE and not snap.tasks_of(w.id)
        ]
        if not idle:
            return {}
        startup = startup_estimate(snap, settings)
        kept = worth_keeping(arrival_rate(snap) * startup)
        keep = timedelta(seconds=min(startup, settings.scale_down_idle_sec))
        idle.sort(key=lambda w: (w.idle_since, w.id), reverse=True)
        return {w.id: keep if rank < kept else _ZERO for rank, w in enumerate(idle)}

    return snap.derived("keep_windows", settings, compute)


def rate_changes_at(snap: Snapshot, settings: Settings) -> datetime | None:
    """When the arrival count may drop (its oldest task leaves the window), which may
    change what the rule keeps: a moment to read the database again. Only under
    break-even, and only while some worker is idle."""
    windows = keep_windows(snap, settings)
    if not windows or snap.arrivals_since is None:
        return None
    return snap.arrivals_since + timedelta(seconds=ARRIVAL_WINDOW_SEC)
