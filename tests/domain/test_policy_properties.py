"""The policy over time: deadlines, and invariants over arbitrary snapshots (hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from reactor.domain import breakeven, rules
from reactor.domain.actions import (
    Action,
    Cause,
    Drain,
    Retire,
    Spawn,
)
from reactor.domain.breakeven import ARRIVAL_WINDOW_SEC
from reactor.domain.model import (
    LIVE_STATUSES,
    Limits,
    Snapshot,
)
from reactor.domain.policy import decide, next_deadline
from reactor.domain.spawn_gate import START_FAILURES_BEFORE_PROBING
from reactor.settings import Settings
from tests.domain.builders import NOW, ago, make_settings, snap, task, worker

# --- deadlines -------------------------------------------------------------------------


def test_next_deadline_is_earliest_heartbeat_expiry() -> None:
    s = make_settings(GPU_IDLE_TIMEOUT_SEC=60, SCALE_DOWN_IDLE_SEC=1000)
    a, b = worker("a", beat=10), worker("b", beat=50)
    deadline = next_deadline(snap(workers=(a, b), running=(task("t1", "a"), task("t2", "b"))), s)
    assert deadline == NOW + timedelta(seconds=10)


def test_next_deadline_none_when_nothing_pending() -> None:
    assert next_deadline(snap(), make_settings()) is None


TICK = timedelta(microseconds=1)


def at(sn: Snapshot, now: datetime) -> Snapshot:
    """The same snapshot read at another moment: no event in between."""
    return replace(sn, now=now)


def answer(actions: list[Action]) -> list[Action]:
    """The actions without their free-text reasons, which embed ages."""
    return [replace(a, reason="") if hasattr(a, "reason") else a for a in actions]


@pytest.mark.parametrize(
    ("sn", "limits", "due", "cause"),
    [
        (snap(1, (worker("s", "spawning", age=100),)), Limits(), 200, Cause.SPAWN_TIMEOUT),
        (snap(0, (worker("a", beat=10),), (task("t", "a"),)), Limits(), 50, Cause.HEARTBEAT),
        (
            snap(0, (worker("d", "terminating", draining_since=ago(100)),), (task("t", "d"),)),
            Limits(),
            20,
            Cause.DRAIN_TIMEOUT,
        ),
        (snap(0, (worker("w"),), (task("t", "w", started=590),)), Limits(), 10, Cause.STUCK),
        (snap(0, (worker("i", idle=20),)), Limits(), 10, Cause.IDLE),
        (snap(1), Limits(spawn_blocked_until=NOW + timedelta(seconds=5)), 5, Cause.SCALE_UP),
    ],
    ids=["spawn", "heartbeat", "drain", "stuck", "idle", "spawn block"],
)
def test_the_answer_holds_until_the_deadline_and_changes_there(
    sn: Snapshot, limits: Limits, due: float, cause: Cause
) -> None:
    s = make_settings()
    deadline = next_deadline(sn, s, limits)
    assert deadline == NOW + timedelta(seconds=due)
    before = answer(decide(sn, s, limits))
    assert answer(decide(at(sn, deadline - TICK), s, limits)) == before
    assert cause not in {a.cause for a in before}
    assert cause in {a.cause for a in decide(at(sn, deadline), s, limits)}


# --- invariants, over arbitrary snapshots --------------------------------------------------

statuses = st.sampled_from(sorted(LIVE_STATUSES))


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[Snapshot, Settings, Limits]:
    maximum = draw(st.integers(0, 6))
    minimum = draw(st.integers(0, maximum))
    s = make_settings(
        MIN_ACTIVE_GPUS=minimum,
        MAX_ACTIVE_GPUS=maximum,
        TASKS_PER_GPU_THRESHOLD=draw(st.integers(1, 5)),
        MAX_HOURLY_SPEND_USD=draw(st.none() | st.floats(1.0, 10.0)),
        SCALE_DOWN_POLICY=draw(st.sampled_from(["fixed", "break-even"])),
        MACHINES_TO_KEEP_IDLE=draw(st.sampled_from([0, 0, 1])),
    )
    n = draw(st.integers(0, 8))
    workers = []
    for i in range(n):
        status = draw(statuses)
        age = draw(st.floats(1, 2000))
        workers.append(
            worker(
                f"gpu-reactor-{i:04d}",
                status,
                age=age,
                beat=draw(st.floats(0, 200)),
                idle=draw(st.none() | st.floats(0, 500)),
                cost_per_hr=draw(st.floats(0.1, 2.0)),
                draining_since=ago(draw(st.floats(0, 300))) if status == "terminating" else None,
            )
        )
    running = []
    for i, w in enumerate(workers):
        if w.status != "spawning" and draw(st.booleans()):
            running.append(task(f"t{i}", w.id, started=draw(st.floats(0, 1000))))
    limits = Limits(
        expected_price=draw(st.floats(0.1, 2.0)),
        unconfirmed_pods=draw(st.integers(0, 2)),
        start_failures=draw(st.sampled_from([0, 0, 2, 3, 7])),
    )
    sn = snap(draw(st.integers(0, 50)), tuple(workers), tuple(running))
    # The break-even rule's arrivals: none, or some since a moment of the window.
    arrivals = draw(st.sampled_from([0, 0, 1, 5, 40, 400]))
    since = ago(draw(st.floats(0, ARRIVAL_WINDOW_SEC))) if arrivals else None
    return replace(sn, arrivals=arrivals, arrivals_since=since), s, limits


@hsettings(max_examples=300, deadline=None)
@given(snapshots())
def test_policy_invariants(case: tuple[Snapshot, Settings, Limits]) -> None:
    sn, s, limits = case
    actions = decide(sn, s, limits)
    retired = {a.worker_id for a in actions if isinstance(a, Retire)}
    spawned = sum(isinstance(a, Spawn) for a in actions)
    live_after = [w for w in sn.workers if w.id not in retired]
    # never above MAX live pods, counting pods not yet confirmed gone
    if spawned:
        assert len(live_after) + spawned + limits.unconfirmed_pods <= s.max_active_gpus
    # while pods keep failing to start, at most one starts at a time
    if spawned and limits.start_failures >= START_FAILURES_BEFORE_PROBING:
        assert spawned + sum(w.status == "spawning" for w in live_after) <= 1
    # never above the budget by spawning
    if spawned and s.max_hourly_spend_usd is not None:
        burn = sum(w.cost_per_hr for w in live_after)
        assert burn + spawned * limits.expected_price <= s.max_hourly_spend_usd + 1e-6
    # never drain a busy worker for scale-down, never below MIN
    busy = {t.worker_id for t in sn.running}
    scale_drains = [a for a in actions if isinstance(a, Drain) and a.cause == Cause.IDLE]
    assert not any(a.worker_id in busy for a in scale_drains)
    capacity = [w for w in live_after if w.status in ("spawning", "active")]
    if scale_drains:
        assert len(capacity) - len(scale_drains) >= s.min_active_gpus
    # every silent worker is ended
    for w in sn.workers:
        if (
            w.status != "spawning"
            and w.last_heartbeat is not None
            and NOW - w.last_heartbeat >= timedelta(seconds=s.gpu_idle_timeout_sec)
        ):
            assert w.id in retired
    # a worker is never both spawned for and drained/retired twice
    assert len(retired) == sum(isinstance(a, Retire) for a in actions)
    # deciding is deterministic
    assert decide(sn, s, limits) == actions


@st.composite
def quiet_snapshots(draw: st.DrawFn) -> tuple[Snapshot, Settings, Limits]:
    """Arbitrary event snapshots (no pods), with tasks of unknown workers, tasks waiting
    out a retry delay and the executor's limits that end at a moment."""
    sn, s, limits = draw(snapshots())
    later = st.floats(1, 900).map(lambda sec: NOW + timedelta(seconds=sec))
    ghosts = tuple(
        task(f"g{i}", draw(st.sampled_from([None, "gone"])), started=draw(st.floats(0, 1000)))
        for i in range(draw(st.integers(0, 2)))
    )
    waiting = draw(st.integers(0, sn.queued))
    sn = replace(
        sn,
        running=sn.running + ghosts,
        in_progress=len(sn.running) + len(ghosts),
        waiting=waiting,
        next_retry_at=draw(later) if waiting else None,
    )
    limits = replace(
        limits,
        spawn_blocked_until=draw(st.none() | later),
        terminate_retry_at=draw(st.none() | later),
    )
    return sn, s, limits


def _inputs(sn: Snapshot, s: Settings, limits: Limits) -> tuple[object, ...]:
    """What a moment changes in decide's inputs: the rules' verdicts, the spawn block."""
    blocked = limits.spawn_blocked_until is not None and sn.now < limits.spawn_blocked_until
    return (*(v.breached for v in rules.verdicts(sn, s)), blocked)


@hsettings(max_examples=300, deadline=None)
@given(quiet_snapshots(), st.data())
def test_absent_events_the_answer_holds_until_next_deadline(
    case: tuple[Snapshot, Settings, Limits], data: st.DataObject
) -> None:
    sn, s, limits = case
    expected = answer(decide(sn, s, limits))
    deadline = next_deadline(sn, s, limits)
    if deadline is None:
        later = data.draw(st.integers(1, 10**11)) * TICK  # up to a day
        assert answer(decide(at(sn, sn.now + later), s, limits)) == expected
        return
    assert deadline > sn.now
    span = (deadline - sn.now) // TICK
    for step in {1, data.draw(st.integers(1, max(span - 1, 1))), span - 1}:
        if 0 < step < span:
            assert answer(decide(at(sn, sn.now + step * TICK), s, limits)) == expected
    # At the deadline something decide reads may change (a verdict, the spawn block), or
    # it is a moment the executor or a re-read needs (a terminate retry, a task due, the
    # break-even rule's arrival count dropping).
    changed = _inputs(at(sn, deadline), s, limits) != _inputs(sn, s, limits)
    rereads = (sn.next_retry_at, limits.terminate_retry_at, breakeven.rate_changes_at(sn, s))
    assert changed or deadline in rereads
