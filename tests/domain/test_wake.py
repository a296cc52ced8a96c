"""The wake schedule on a fake clock: tables of moments in, moments and kinds out."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from reactor.domain.wake import (
    DEADLINE_SLACK,
    MAX_COALESCE_WINDOW,
    TRAILING_CHECK,
    ReconcileKind,
    WakeSchedule,
)

DB_NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # the database clock of each snapshot
WINDOW = 0.05
INTERVAL = 30.0


class FixedJitter:
    """Always draws ``factor``; remembers the bounds it was asked for."""

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor
        self.bounds: list[tuple[float, float]] = []

    def __call__(self, low: float, high: float) -> float:
        self.bounds.append((low, high))
        return self.factor


def make(
    *, window: float = WINDOW, interval: float = INTERVAL, jitter: float = 1.0
) -> WakeSchedule:
    return WakeSchedule(coalesce_window=window, sweep_interval=interval, jitter=FixedJitter(jitter))


def run(
    schedule: WakeSchedule,
    at: float,
    *,
    rang: bool = True,
    took: float = 0.0,
    ran_as: ReconcileKind | None = None,
    deadline_in: float | None = None,
) -> tuple[float, ReconcileKind]:
    """One turn of the service's loop woken at ``at``: hold, begin, reconcile for ``took``
    seconds, report (as ``ran_as``, by default what ``begin`` said). Returns the hold and
    the kind ``begin`` chose."""
    hold = schedule.hold(at, rang=rang)
    kind = schedule.begin(at + hold)
    deadline = None if deadline_in is None else DB_NOW + timedelta(seconds=deadline_in)
    schedule.ran(at + hold + took, ran_as or kind, deadline=deadline, db_now=DB_NOW)
    return hold, kind


def swept(**kwargs: float) -> WakeSchedule:
    """A schedule whose term began with its sweep, which ended at t=100."""
    schedule = make(**kwargs)
    assert run(schedule, 100.0, rang=False) == (0.0, "sweep")
    return schedule


# --- a term's first wake-up ---------------------------------------------------------------


def test_a_term_begins_with_a_sweep_at_once() -> None:
    schedule = make()
    assert schedule.wait_time(5.0) == 0.0
    assert schedule.hold(5.0, rang=False) == 0.0
    assert schedule.begin(5.0) == "sweep"


# --- coalescing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("woke_after", "rang", "hold"),
    [
        (0.01, True, 0.04),  # events right after a reconcile wait out the window
        (0.049, True, 0.001),
        (0.05, True, 0.0),  # the window has passed: at once
        (3.0, True, 0.0),
        (0.01, False, 0.0),  # woken by the clock alone (a deadline): no hold
    ],
)
def test_events_right_after_a_reconcile_are_held_for_the_rest_of_the_window(
    woke_after: float, rang: bool, hold: float
) -> None:
    schedule = swept()
    assert schedule.hold(100.0 + woke_after, rang=rang) == pytest.approx(hold)


def test_back_to_back_tasks_double_the_window_up_to_its_cap() -> None:
    schedule = swept()
    end, windows = 100.0, []
    for _ in range(7):
        schedule.task_queued()
        hold, _ = run(schedule, end + 0.01, took=0.005)
        end += 0.01 + hold + 0.005
        windows.append(schedule.window)
    assert windows == pytest.approx([0.1, 0.2, 0.4, 0.8, MAX_COALESCE_WINDOW, 1.0, 1.0])


def test_a_task_queued_during_the_hold_counts_as_pressure() -> None:
    schedule = swept()
    hold = schedule.hold(100.01, rang=True)  # rung by an echo of the reactor's own write
    schedule.task_queued()  # then a task arrives while the burst gathers
    schedule.begin(100.01 + hold)
    assert schedule.window == pytest.approx(2 * WINDOW)


@pytest.mark.parametrize(
    ("queued", "woke_after", "window"),
    [
        (True, 0.01, 4 * WINDOW),  # pressure: tasks back to back
        (True, 0.09, 4 * WINDOW),  # within the widened window, not the base one
        (False, 0.01, WINDOW),  # an echo (worker_status, ...) is not pressure
        (True, 0.3, WINDOW),  # a task after a quiet spell is not pressure either
    ],
)
def test_the_window_widens_only_under_task_pressure_and_resets_otherwise(
    queued: bool, woke_after: float, window: float
) -> None:
    schedule = swept()
    schedule.task_queued()
    assert run(schedule, 100.01) == (pytest.approx(0.04), "event")  # ends at 100.05
    assert schedule.window == pytest.approx(2 * WINDOW)
    if queued:
        schedule.task_queued()
    run(schedule, 100.05 + woke_after)
    assert schedule.window == pytest.approx(window)


def test_a_window_set_above_the_cap_is_the_cap_under_pressure() -> None:
    schedule = swept(window=2.0)
    schedule.task_queued()
    run(schedule, 100.5)
    assert schedule.window == MAX_COALESCE_WINDOW


# --- failed reconciles --------------------------------------------------------------------


def test_failure_retry_doubles_from_0_4_s_up_to_10_s_and_resets_on_success() -> None:
    schedule = swept()
    delays = []
    for _ in range(8):
        schedule.begin(200.0)
        delays.append(schedule.failed())
    assert delays == pytest.approx([0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0])
    assert schedule.failures == 8
    run(schedule, 300.0)
    assert schedule.failures == 0
    schedule.begin(301.0)
    assert schedule.failed() == pytest.approx(0.4)


def test_a_failed_sweep_is_still_due_and_a_failed_event_reconcile_asks_for_none() -> None:
    schedule = make()
    assert schedule.begin(5.0) == "sweep"
    schedule.failed()
    assert schedule.begin(5.5) == "sweep"
    schedule = swept()
    assert schedule.begin(101.0) == "event"
    schedule.failed()
    assert schedule.begin(101.5) == "event"


def test_a_failed_reconcile_leaves_the_schedule_of_the_last_good_one() -> None:
    schedule = swept()
    schedule.task_queued()
    run(schedule, 101.0, deadline_in=5.0)
    before = (schedule.deadline_at, schedule.trailing_at, schedule.next_sweep_at)
    schedule.begin(101.1)
    schedule.failed()
    assert (schedule.deadline_at, schedule.trailing_at, schedule.next_sweep_at) == before


# --- the sweep ----------------------------------------------------------------------------


@pytest.mark.parametrize("jitter", [0.9, 1.0, 1.1])
def test_the_next_sweep_is_one_jittered_interval_after_the_last(jitter: float) -> None:
    schedule = make(jitter=jitter)
    run(schedule, 100.0, took=0.5, rang=False)
    assert schedule.next_sweep_at == pytest.approx(100.5 + INTERVAL * jitter)
    assert schedule.wait_time(101.0) == pytest.approx(INTERVAL * jitter - 0.5)
    assert schedule._jitter.bounds == [(0.9, 1.1)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("at", "kind"),
    [(129.99, "event"), (130.0, "sweep"), (500.0, "sweep")],
)
def test_a_reconcile_is_a_sweep_once_the_sweep_is_due(at: float, kind: str) -> None:
    schedule = swept()
    assert schedule.begin(at) == kind


def test_a_sweep_request_makes_the_next_reconcile_a_sweep_and_restarts_the_timer() -> None:
    schedule = swept()
    schedule.request_sweep()
    assert run(schedule, 110.0) == (0.0, "sweep")
    assert schedule.next_sweep_at == pytest.approx(110.0 + INTERVAL)
    assert schedule.begin(111.0) == "event"


def test_event_reconciles_leave_the_sweep_timer_alone() -> None:
    schedule = swept()
    for at in (105.0, 110.0, 120.0):
        assert run(schedule, at)[1] == "event"
    assert schedule.next_sweep_at == pytest.approx(100.0 + INTERVAL)


@pytest.mark.parametrize(
    ("interval", "retries"),
    [
        (INTERVAL, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]),  # 0.5 s * 2^n, at most 10 s
        (3.0, [1.0, 2.0, 3.0, 3.0]),  # and never later than the interval itself
    ],
)
def test_a_sweep_without_the_pod_list_is_retried_with_backoff(
    interval: float, retries: list[float]
) -> None:
    schedule = make(interval=interval)
    now, seen = 100.0, []
    for _ in retries:
        assert schedule.begin(now) == "sweep"
        schedule.ran(now, "event", deadline=None, db_now=DB_NOW)  # the list failed
        seen.append(schedule.next_sweep_at - now)
        now = schedule.next_sweep_at
    assert seen == pytest.approx(retries)
    assert schedule.list_failures == len(retries)
    run(schedule, now)  # the list is back: a real sweep, the interval again
    assert schedule.list_failures == 0
    assert schedule.next_sweep_at == pytest.approx(now + interval)


# --- deadlines and the trailing check -----------------------------------------------------


@pytest.mark.parametrize("deadline_in", [0.0, 1.5, 3600.0])
def test_the_deadline_is_converted_from_the_database_clock(deadline_in: float) -> None:
    schedule = swept()
    run(schedule, 110.0, took=0.3, deadline_in=deadline_in)
    # Measured from the snapshot's now on the database clock, applied from the end of
    # the reconcile on this one, with the slack that lets the database agree it passed.
    assert schedule.deadline_at == pytest.approx(110.3 + deadline_in + DEADLINE_SLACK)
    expected = min(deadline_in + DEADLINE_SLACK, 100.0 + INTERVAL - 110.3)
    assert schedule.wait_time(110.3) == pytest.approx(expected)


def test_no_deadline_leaves_the_sweep_as_the_next_wake() -> None:
    schedule = swept()
    run(schedule, 110.0, deadline_in=2.0)
    run(schedule, 111.0)
    assert schedule.deadline_at == math.inf
    assert schedule.next_wake_at == schedule.next_sweep_at == pytest.approx(130.0)


def test_a_reconcile_woken_by_task_queued_is_followed_by_a_trailing_check() -> None:
    schedule = swept()
    schedule.task_queued()
    run(schedule, 110.0, took=0.1, deadline_in=60.0)
    assert schedule.trailing_at == pytest.approx(110.1 + TRAILING_CHECK)
    assert schedule.wait_time(110.1) == pytest.approx(TRAILING_CHECK)
    # The trailing check itself (woken by the clock, no task queued) sets none.
    assert run(schedule, 110.35, rang=False, deadline_in=59.75) == (0.0, "event")
    assert schedule.trailing_at == math.inf
    assert schedule.wait_time(110.35) == pytest.approx(19.65)  # the sweep, at 130


def test_an_earlier_deadline_comes_before_the_trailing_check() -> None:
    schedule = swept()
    schedule.task_queued()
    run(schedule, 110.0, deadline_in=0.1)
    assert schedule.next_wake_at == pytest.approx(110.0 + 0.1 + DEADLINE_SLACK)


def test_a_reconcile_woken_by_other_events_has_no_trailing_check() -> None:
    schedule = swept()
    run(schedule, 110.0)  # the doorbell rang for worker_status, say
    assert schedule.trailing_at == math.inf
