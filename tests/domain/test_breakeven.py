"""Break-even scale-down (reactor/domain/breakeven.py): tables, then properties."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.domain import breakeven, rules
from reactor.domain.actions import Cause, Drain
from reactor.domain.breakeven import ARRIVAL_WINDOW_SEC, worth_keeping
from reactor.domain.model import Snapshot
from reactor.domain.policy import decide, next_deadline
from tests.domain.builders import NOW, ago, make_settings, snap, task, worker

BREAK_EVEN = dict(SCALE_DOWN_POLICY="break-even", TASKS_PER_GPU_THRESHOLD=1)


def _tail(mean: float, j: int) -> float:
    """P(N >= j) for N Poisson of ``mean``."""
    return 1 - sum(math.exp(-mean) * mean**k / math.factorial(k) for k in range(j))


@pytest.mark.parametrize(
    ("expected", "kept"),
    [
        (0.0, 0),
        (0.5, 0),  # P(N >= 1) = 0.39: the next task more likely not to come
        (0.7, 1),  # P(N >= 1) = 0.503
        (1.0, 1),
        (2.0, 2),  # P(N >= 2) = 0.59, P(N >= 3) = 0.32
        (3.75, 4),  # the diurnal day's mean rate over a 90 s start-up: P(N >= 4) = 0.52
        (10.0, 10),
        (250.0, 250),
    ],
)
def test_the_workers_worth_keeping_are_the_median_arrivals(expected: float, kept: int) -> None:
    assert worth_keeping(expected) == kept


@given(st.floats(0, 100))
def test_each_kept_worker_is_more_likely_than_not_to_be_needed(expected: float) -> None:
    kept = worth_keeping(expected)
    assert kept == 0 or _tail(expected, kept) >= 0.5 - 1e-9
    assert _tail(expected, kept + 1) <= 0.5 + 1e-9


@given(st.floats(0, 1000), st.floats(0, 1000))
def test_more_arrivals_never_keep_fewer_workers(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert worth_keeping(low) <= worth_keeping(high)
    assert abs(worth_keeping(high) - high) <= 1


def _fleet(arrivals: int) -> Snapshot:
    """Three idle workers, freed 50, 20 and 5 s ago, one busy; each took 60 s to start."""
    workers = tuple(
        worker(w, age=1000, idle=idle, activated_at=ago(940))
        for w, idle in (("old", 50), ("mid", 20), ("new", 5))
    ) + (worker("busy", age=1000, activated_at=ago(940)),)
    sn = snap(0, workers, (task("t", "busy"),))
    return replace(sn, arrivals=arrivals, arrivals_since=ago(100) if arrivals else None)


def _per_startup(tasks: float, startup: float = 60) -> int:
    """The arrivals in the window that make ``tasks`` arrive within one start-up."""
    return round(tasks * ARRIVAL_WINDOW_SEC / startup)


@pytest.mark.parametrize(
    ("per_startup", "cap", "drained"),
    [
        (0, 300, ["old", "mid", "new"]),  # arrivals stopped: every idle worker goes at once
        (1, 300, ["old", "mid"]),  # a task per start-up: the newest is kept
        (2.1, 300, ["old"]),  # two are kept, each for one start-up (60 s)
        (20, 300, []),  # all three: none has been idle for a start-up yet
        (20, 30, ["old"]),  # never longer than SCALE_DOWN_IDLE_SEC
    ],
)
def test_idle_workers_are_kept_by_the_arrival_rate_the_newest_first(
    per_startup: float, cap: float, drained: list[str]
) -> None:
    s = make_settings(**BREAK_EVEN, SCALE_DOWN_IDLE_SEC=cap)
    drains = [a for a in decide(_fleet(_per_startup(per_startup)), s) if isinstance(a, Drain)]
    assert sorted(a.worker_id for a in drains) == sorted(drained)
    assert all(a.cause == Cause.IDLE for a in drains)


@pytest.mark.parametrize(
    ("overrides", "drained"),
    [
        ({"MIN_ACTIVE_GPUS": 2}, ["old", "mid"]),
        ({"MACHINES_TO_KEEP_IDLE": 1}, ["old", "mid"]),
        ({"MAX_ACTIVE_GPUS": 2}, ["old", "mid", "new"]),
    ],
)
def test_min_and_the_warm_buffer_hold_under_break_even(
    overrides: dict[str, int], drained: list[str]
) -> None:
    s = make_settings(**BREAK_EVEN, **overrides)
    drains = [a.worker_id for a in decide(_fleet(0), s) if isinstance(a, Drain)]
    assert sorted(drains) == sorted(drained)


def test_a_kept_worker_is_drained_one_start_up_after_it_became_free() -> None:
    s = make_settings(**BREAK_EVEN, SCALE_DOWN_IDLE_SEC=300, GPU_IDLE_TIMEOUT_SEC=120)
    sn = _fleet(_per_startup(1))
    # The newest (freed 5 s ago) is kept for the 60 s its fleet takes to start; the
    # arrival count may drop 100 s before the window's end: a re-read then.
    assert breakeven.rate_changes_at(sn, s) == ago(100) + timedelta(seconds=ARRIVAL_WINDOW_SEC)
    assert next_deadline(sn, s) == ago(5) + timedelta(seconds=60)
    drained = [a.worker_id for a in decide(sn, s) if isinstance(a, Drain)]
    later = replace(sn, now=NOW + timedelta(seconds=55))
    assert [a.worker_id for a in decide(later, s) if isinstance(a, Drain)] == [*drained, "new"]


def test_the_start_up_is_the_live_workers_mean_or_the_setting() -> None:
    s = make_settings(**BREAK_EVEN, POD_STARTUP_ESTIMATE_SEC=150)
    assert breakeven.startup_estimate(snap(), s) == 150
    spawning = snap(1, (worker("s", "spawning", age=30),))
    assert breakeven.startup_estimate(spawning, s) == 150
    fleet = snap(0, (worker("a", age=100, activated_at=ago(60)), worker("b", age=100)))
    assert breakeven.startup_estimate(fleet, s) == (40 + 10) / 2
    adopted = snap(0, (worker("a", age=100, activated_at=ago(60), managed=False),))
    assert breakeven.startup_estimate(adopted, s) == 150


def test_the_fixed_policy_keeps_every_idle_worker_for_scale_down_idle_sec() -> None:
    s = make_settings(SCALE_DOWN_IDLE_SEC=30, TASKS_PER_GPU_THRESHOLD=1)
    sn = _fleet(_per_startup(20))
    assert breakeven.keep_windows(sn, s) is None
    assert breakeven.rate_changes_at(sn, s) is None
    assert [a.worker_id for a in decide(sn, s) if isinstance(a, Drain)] == ["old"]
    assert rules.judge(sn, s).workers["new"].idle.deadline == ago(5) + timedelta(seconds=30)
