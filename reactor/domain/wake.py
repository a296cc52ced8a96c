"""The wake schedule: when the reactor wakes, and for what kind of reconcile.

Pure: every call takes the service's monotonic ``now`` (seconds), and the sweep's jitter
is drawn through the function the service hands in, so tests drive it on a fake clock.

A reconcile runs for one of five reasons:
- events: the service's doorbell rang. A burst is coalesced: the reconcile runs at once
  when the last one ended more than the coalescing window ago, otherwise when the window
  has passed. The window doubles (up to MAX_COALESCE_WINDOW) while tasks are queued back
  to back, and is back to COALESCE_WINDOW_SEC as soon as they are not.
- the deadline: the earliest moment the policy could answer differently
  (``policy.next_deadline``), a datetime on the database clock, converted to this clock
  through the snapshot's ``now``, plus DEADLINE_SLACK so the database agrees it passed.
- the sweep timer: a full reconcile (with the provider's pod list) every
  SWEEP_INTERVAL_SEC +-10 %. A sweep whose pod list failed is retried sooner, after
  0.5 s * 2^failures (at most RECONCILE_RETRY_MAX and never later than the interval).
- the trailing check, TRAILING_CHECK after a reconcile woken by task_queued.
- a failed reconcile: retried after 0.2 s * 2^failures, at most RECONCILE_RETRY_MAX.

The service's loop: wait ``wait_time(now)`` or for the doorbell; ``hold(now, rang)``
while a burst gathers; ``begin(now)`` says "sweep" or "event"; reconcile; report with
``ran(...)`` or ``failed()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Literal

ReconcileKind = Literal["sweep", "event"]
Jitter = Callable[[float, float], float]
"""Draws a number between its two bounds (the service passes ``random.uniform``)."""

DEADLINE_SLACK = 0.02  # seconds past a deadline, so the database agrees it has passed
RECONCILE_RETRY_MAX = 10.0  # seconds: the longest wait before retrying a failed reconcile
MAX_COALESCE_WINDOW = 1.0  # seconds: the longest an event waits under sustained pressure
# After a reconcile woken by task_queued, one more follows this much later: an insert
# whose transaction straddled the doorbell's re-arm commits unrung (see 0005_triggers.sql).
TRAILING_CHECK = 0.25
SWEEP_JITTER = 0.1  # each sweep interval is drawn from interval * [0.9, 1.1]
FAILURE_RETRY_BASE = 0.2  # seconds: a failed reconcile waits base * 2^failures
LIST_RETRY_BASE = 0.5  # seconds: a sweep without the pod list is retried after base * 2^n


class WakeSchedule:
    """One leadership term's wake-ups. Its state is read-only outside (properties)."""

    def __init__(self, *, coalesce_window: float, sweep_interval: float, jitter: Jitter) -> None:
        self._base_window = coalesce_window
        self._sweep_interval = sweep_interval
        self._jitter = jitter
        self._window = coalesce_window
        self._failures = 0
        self._list_failures = 0
        self._last_end = -math.inf
        self._next_sweep_at = -math.inf  # a term begins with a sweep, at once
        self._deadline_at = math.inf
        self._trailing_at = math.inf
        self._sweep_requested = True
        self._queued = False  # a task_queued event arrived since the last reconcile began
        self._woke_at: float | None = None
        self._attempt: ReconcileKind | None = None
        self._trailing = False  # the reconcile under way was woken by task_queued

    # --- what arrived ----------------------------------------------------------------------
    def task_queued(self) -> None:
        """A task_queued event: the next reconcile is followed by a trailing check, and
        tasks arriving back to back widen the coalescing window."""
        self._queued = True

    def request_sweep(self) -> None:
        """The next reconcile is a full sweep (a sweep event, a listener reconnect)."""
        self._sweep_requested = True

    # --- when to wake ----------------------------------------------------------------------
    @property
    def next_wake_at(self) -> float:
        """The next moment a reconcile is due without any event: deadline, trailing check
        or sweep, whichever is first."""
        return min(self._deadline_at, self._trailing_at, self._next_sweep_at)

    def wait_time(self, now: float) -> float | None:
        """Seconds from ``now`` until ``next_wake_at`` (0 when it is due), or None when
        nothing is scheduled: only an event wakes the reactor then."""
        at = self.next_wake_at
        return None if at == math.inf else max(at - now, 0.0)

    def hold(self, now: float, *, rang: bool) -> float:
        """On waking at ``now``: how long to let a burst of events gather before the
        reconcile (0: at once). ``rang``: the doorbell rang (not only the clock)."""
        self._woke_at = now
        since = now - self._last_end
        return self._window - since if rang and since < self._window else 0.0

    def begin(self, now: float) -> ReconcileKind:
        """The reconcile starts: a full "sweep" (with the provider's pod list) or an
        "event" reconcile. Takes in the events that arrived until ``now``."""
        woke_at, self._woke_at = (now if self._woke_at is None else self._woke_at), None
        # Only tasks arriving back to back are pressure that widens the window; the
        # echoes of the reactor's own writes (worker_status, ...) are not.
        if self._queued and woke_at - self._last_end < self._window:
            self._window = min(self._window * 2, MAX_COALESCE_WINDOW)
        else:
            self._window = self._base_window
        full = self._sweep_requested or now >= self._next_sweep_at
        self._sweep_requested = False
        self._trailing, self._queued = self._queued, False
        self._attempt = "sweep" if full else "event"
        return self._attempt

    # --- what happened ---------------------------------------------------------------------
    def ran(
        self, now: float, kind: ReconcileKind, *, deadline: datetime | None, db_now: datetime
    ) -> None:
        """The reconcile ended at ``now`` as ``kind``: "event" after ``begin`` said "sweep"
        means the provider's pod list failed. ``deadline`` is the policy's next deadline
        and ``db_now`` the snapshot's ``now``, both on the database clock."""
        self._failures = 0
        self._last_end = now
        if kind == "sweep":
            self._list_failures = 0
            self._next_sweep_at = now + self._interval()
        elif self._attempt == "sweep":  # the sweep ran without the provider's list
            self._list_failures += 1
            backoff = LIST_RETRY_BASE * 2.0**self._list_failures
            self._next_sweep_at = now + min(backoff, RECONCILE_RETRY_MAX, self._interval())
        self._deadline_at = (
            math.inf
            if deadline is None
            else now + (deadline - db_now).total_seconds() + DEADLINE_SLACK
        )
        self._trailing_at = now + TRAILING_CHECK if self._trailing else math.inf
        self._attempt, self._trailing = None, False

    def failed(self) -> float:
        """The reconcile raised: seconds to wait before the retry. A sweep stays due."""
        self._failures += 1
        if self._attempt == "sweep":
            self._sweep_requested = True
        self._attempt, self._trailing = None, False
        return min(FAILURE_RETRY_BASE * 2.0**self._failures, RECONCILE_RETRY_MAX)

    def _interval(self) -> float:
        return self._sweep_interval * self._jitter(1 - SWEEP_JITTER, 1 + SWEEP_JITTER)

    # --- read-only state (/status, tests) -------------------------------------------------
    @property
    def window(self) -> float:
        """The coalescing window in force, seconds."""
        return self._window

    @property
    def failures(self) -> int:
        """Reconciles that failed in a row."""
        return self._failures

    @property
    def list_failures(self) -> int:
        """Sweeps in a row that ran without the provider's pod list."""
        return self._list_failures

    @property
    def next_sweep_at(self) -> float:
        return self._next_sweep_at

    @property
    def deadline_at(self) -> float:
        return self._deadline_at

    @property
    def trailing_at(self) -> float:
        return self._trailing_at
