"""The spawn gate: tables of cases on plain datetimes, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reactor.domain.actions import (
    AttachPod,
    Cause,
    Drain,
    RequeueOrphans,
    RequeueTask,
    Retire,
    Spawn,
    TerminatePod,
)
from reactor.domain.model import WorkerState, WorkerStatus
from reactor.domain.spawn_gate import (
    START_FAILURE_REASON,
    START_FAILURES_BEFORE_PROBING,
    Pause,
    SpawnFailure,
    SpawnGate,
    StartBreaker,
    in_order,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def gate(**kw: float) -> SpawnGate:
    return SpawnGate(backoff_base_sec=30, spawning_timeout_sec=300, **kw)


def started(wid: str, seconds: float, *, managed: bool = True) -> WorkerState:
    return WorkerState(
        id=wid,
        status="active",
        created_at=at(seconds - 60),
        managed=managed,
        activated_at=at(seconds),
    )


def paused_for(g: SpawnGate, now: datetime) -> float | None:
    until = g.limits(now).spawn_blocked_until
    return None if until is None else (until - now).total_seconds()


# --- capacity backoff and the provider's pauses ---------------------------------------------


def test_capacity_backoff_doubles_to_ten_minutes_and_a_spawn_resets_it() -> None:
    g = gate()
    waits = [
        (g.spawn_failed(SpawnFailure.NO_CAPACITY, "none", at(0)).until - at(0)).total_seconds()
        for _ in range(7)
    ]
    assert waits == [30, 60, 120, 240, 480, 600, 600]
    g.spawned()
    assert paused_for(g, at(0)) is None  # a success ends the pause as well
    assert g.spawn_failed(SpawnFailure.NO_CAPACITY, "none", at(0)).until == at(30)


def test_an_uncertain_create_backs_off_on_the_same_count_as_no_capacity() -> None:
    g = gate()
    g.spawn_failed(SpawnFailure.NO_CAPACITY, "none", at(0))
    pause = g.spawn_failed(SpawnFailure.UNCERTAIN, "timeout", at(0))
    assert pause == Pause(at(60), "create failed: timeout")


@pytest.mark.parametrize(
    ("failure", "retry_after", "seconds", "reason"),
    [
        (SpawnFailure.INSUFFICIENT_BALANCE, 0, 600, "insufficient_balance: 402"),
        (SpawnFailure.RATE_LIMITED, 7.5, 7.5, "rate_limited: 402"),
        (SpawnFailure.RATE_LIMITED, 0, 1, "rate_limited: 402"),  # at least a second
        (SpawnFailure.REJECTED, 0, 600, "rejected: 402"),
        # until the provider's first candidate may be tried again, at most ten minutes
        (SpawnFailure.REJECTED, 590.5, 590.5, "rejected: 402"),
        (SpawnFailure.REJECTED, 0.2, 1, "rejected: 402"),
        (SpawnFailure.REJECTED, 5000, 600, "rejected: 402"),
        (SpawnFailure.NO_CAPACITY, 0, 30, "no_capacity: 402"),
        (SpawnFailure.UNCERTAIN, 0, 30, "create failed: 402"),
    ],
)
def test_each_failed_create_pauses_spawns(
    failure: SpawnFailure, retry_after: float, seconds: float, reason: str
) -> None:
    g = gate()
    g.spawn_failed(failure, "402", at(0), retry_after=retry_after)
    limits = g.limits(at(0))
    assert (limits.spawn_blocked_until, limits.spawn_blocked_reason) == (at(seconds), reason)
    assert g.deferral(at(0)) == f"spawns paused: {reason}"


def test_a_shorter_pause_does_not_cut_a_longer_one_short() -> None:
    g = gate()
    g.spawn_failed(SpawnFailure.INSUFFICIENT_BALANCE, "402", at(0))
    g.spawn_failed(SpawnFailure.RATE_LIMITED, "429", at(10), retry_after=5)
    assert g.limits(at(20)).spawn_blocked_reason == "insufficient_balance: 402"
    assert g.limits(at(20)).spawn_blocked_until == at(600)


def test_an_expired_pause_is_gone_from_every_view() -> None:
    # The bug this fixes: the executor ended a pause for itself but /status kept showing
    # "paused until <a time in the past>" until a later spawn succeeded.
    g = gate()
    g.spawn_failed(SpawnFailure.RATE_LIMITED, "429", at(0), retry_after=5)
    assert g.limits(at(4.9)).spawn_blocked_until == at(5)
    over = g.limits(at(5))
    assert (over.spawn_blocked_until, over.spawn_blocked_reason) == (None, None)
    assert g.deferral(at(5)) is None
    # ... and a later, shorter pause is not held back by the one that ended.
    assert g.spawn_failed(SpawnFailure.RATE_LIMITED, "429", at(6), retry_after=1).until == at(7)
    assert g.limits(at(6)).spawn_blocked_until == at(7)


# --- the start-failure breaker ---------------------------------------------------------


def test_the_third_start_failure_in_a_row_pauses_and_the_pause_doubles_to_an_hour() -> None:
    g = gate()
    assert g.start_failed("no heartbeat", at(0)) is None
    assert g.start_failed("no heartbeat", at(1)) is None
    assert paused_for(g, at(1)) is None and g.limits(at(1)).start_failures == 2
    pauses = []
    for n in range(3, 9):
        pause = g.start_failed("no heartbeat", at(n))
        assert pause is not None
        pauses.append((pause.until - at(n)).total_seconds())
    assert pauses == [300, 600, 1200, 2400, 3600, 3600]
    limits = g.limits(at(8))
    assert limits.start_failures == 8 and limits.spawn_blocked_until == at(8 + 3600)
    reason = limits.spawn_blocked_reason or ""
    assert reason.startswith(f"{START_FAILURE_REASON} (8 in a row, last: no heartbeat)")
    assert "RUNPOD_CONTAINER_IMAGE" in reason


def test_probing_begins_at_the_threshold() -> None:
    g = gate()
    for n in range(START_FAILURES_BEFORE_PROBING):
        g.start_failed("x", at(n))
    assert g.limits(at(10_000)).start_failures == START_FAILURES_BEFORE_PROBING
    assert paused_for(g, at(10_000)) is None  # the pause is over: the policy sends one probe


def test_a_managed_worker_activated_after_the_last_failure_resets_the_breaker() -> None:
    g = gate()
    for n in range(3):
        g.start_failed("x", at(n * 10))
    assert g.observe([started("before", 15)]) is None  # activated before the last failure
    assert g.observe([started("by-hand", 100, managed=False)]) is None  # not a pod of ours
    assert g.start_failures == 3 and paused_for(g, at(100)) is not None
    assert g.observe([started("by-hand", 100, managed=False), started("probe", 100)]) == "probe"
    assert g.breaker == StartBreaker()
    assert paused_for(g, at(100)) is None and g.limits(at(100)).start_failures == 0


def test_a_reset_keeps_a_pause_the_provider_asked_for() -> None:
    g = gate()
    g.spawn_failed(SpawnFailure.INSUFFICIENT_BALANCE, "402", at(0))
    for n in range(3):
        g.start_failed("x", at(n))
    g.observe([started("probe", 50)])
    assert g.limits(at(60)).spawn_blocked_reason == "insufficient_balance: 402"


def test_a_restored_breaker_carries_on_counting() -> None:
    first = gate()
    first.start_failed("x", at(0))
    first.start_failed("x", at(1))
    second = gate()  # a new leader
    second.restore(first.breaker)
    assert second.start_failed("x", at(2)) is not None
    assert second.limits(at(2)).start_failures == 3


# --- terminates that failed ------------------------------------------------------------


def test_failed_terminates_are_retried_after_1_doubling_to_60_seconds() -> None:
    g = gate()
    assert g.terminations_due(at(0)) == []
    waits = [g.terminate_failed("p1", "dead", at(0)) for _ in range(8)]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    limits = g.limits(at(0))
    assert limits.unconfirmed_pods == 1 and limits.terminate_retry_at == at(60)
    assert g.terminations_due(at(59)) == []
    assert g.terminations_due(at(60)) == [("p1", "dead")]


def test_the_retry_backoff_resets_once_every_pod_is_gone() -> None:
    g = gate()
    g.terminate_failed("p1", "dead", at(0))
    g.terminate_failed("p2", "stray", at(0))
    g.terminated("p1")
    assert g.unconfirmed == {"p2"} and g.limits(at(0)).terminate_retry_at == at(2)
    g.terminated("p2")
    assert g.unconfirmed == frozenset() and g.limits(at(0)).terminate_retry_at is None
    assert g.terminate_failed("p3", "dead", at(100)) == 1


# --- deferral and order ----------------------------------------------------------------


def test_spawns_wait_for_unconfirmed_pods_first_then_for_a_pause() -> None:
    g = gate()
    assert g.deferral(at(0)) is None
    g.start_failed("x", at(0))
    g.start_failed("x", at(0))
    g.start_failed("x", at(0))
    g.terminate_failed("p1", "dead", at(0))
    g.terminate_failed("p2", "dead", at(0))
    assert g.deferral(at(0)) == "2 pod(s) not yet terminated"
    g.terminated("p1")
    g.terminated("p2")
    assert (g.deferral(at(0)) or "").startswith(f"spawns paused: {START_FAILURE_REASON} (3 in")
    assert g.deferral(at(300)) is None


def test_bookkeeping_then_endings_then_spawns() -> None:
    spawn = Spawn("more", cause=Cause.SCALE_UP)
    retire = Retire("w1", "p1", reason="dead", status=WorkerStatus.ERROR, cause=Cause.HEARTBEAT)
    stray = TerminatePod("p9", "gpu-reactor-x", reason="stray")
    drain = Drain("w2", reason="idle", cause=Cause.IDLE)
    attach = AttachPod("w3", "p3")
    requeue = RequeueTask("t1", "w4", 1, reason="stuck")
    orphans = RequeueOrphans(("w5",), reason="orphaned")
    assert in_order([spawn, retire, drain, stray, attach, requeue, orphans, spawn]) == (
        [drain, attach, requeue, orphans],
        [retire, stray],
        [spawn, spawn],
    )


# --- the price -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixed", "catalog", "seen", "price"),
    [(0.0, 0.69, 0.5, 0.69), (0.0, None, 0.5, 0.5), (0.0, None, 0.0, 0.0), (1.2, 0.69, 3.0, 1.2)],
)
def test_the_expected_price_of_a_new_worker(
    fixed: float, catalog: float | None, seen: float, price: float
) -> None:
    g = gate(fixed_price=fixed)
    assert g.limits(at(0)).expected_price == fixed
    g.price_seen(catalog, seen)
    assert g.limits(at(0)).expected_price == price
