"""Each timeout rule on its own: the verdict before, at and after its limit, the deadline at
which it changes, and the timestamps it falls back on when the row lacks one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.domain import breakeven, rules
from reactor.domain.model import Snapshot, TaskState, WorkerState, WorkerStatus
from reactor.domain.rules import NOT_APPLICABLE, Verdict
from reactor.settings import Settings

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SETTINGS = Settings(
    _env_file=None,  # type: ignore[call-arg]
    GPU_IDLE_TIMEOUT_SEC=60,
    TASK_STUCK_TIMEOUT_SEC=600,
    SPAWNING_TIMEOUT_SEC=300,
    GRACEFUL_SHUTDOWN_TIMEOUT_SEC=120,
    SCALE_DOWN_IDLE_SEC=30,
)
TICK = timedelta(microseconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def worker(status: WorkerStatus, **moments: float) -> WorkerState:
    """A worker created at T0; ``moments`` are its other timestamps, seconds after T0."""
    fields = {name: at(seconds) for name, seconds in moments.items()}
    return WorkerState(id="w", status=status, created_at=T0, **fields)  # type: ignore[arg-type]


def task(started: float | None) -> TaskState:
    return TaskState(
        id="t", worker_id="w", attempts=1, started_at=None if started is None else at(started)
    )


WorkerRule = Callable[[WorkerState, Settings, datetime], Verdict]


def idle(w: WorkerState, s: Settings, now: datetime) -> Verdict:
    return rules.idle_timeout(w, (), s, now)


def stuck(t: TaskState, s: Settings, now: datetime) -> Verdict:
    return rules.stuck_timeout(t, s, now)


S, A, D = WorkerStatus.SPAWNING, WorkerStatus.ACTIVE, WorkerStatus.TERMINATING

# (rule, subject, the moment its limit is reached, seconds after T0)
CASES: list[tuple[str, Callable[..., Verdict], object, float]] = [
    ("spawn: from created_at", rules.spawn_timeout, worker(S), 300),
    (
        "heartbeat: from the last heartbeat",
        rules.heartbeat_timeout,
        worker(A, last_heartbeat=50),
        110,
    ),
    (
        "heartbeat: the heartbeat wins over activation",
        rules.heartbeat_timeout,
        worker(A, activated_at=10, last_heartbeat=40),
        100,
    ),
    (
        "heartbeat: never beat, from activation",
        rules.heartbeat_timeout,
        worker(A, activated_at=10),
        70,
    ),
    ("heartbeat: no activation either, from created_at", rules.heartbeat_timeout, worker(A), 60),
    (
        "heartbeat: a draining worker too",
        rules.heartbeat_timeout,
        worker(D, last_heartbeat=200, draining_since=100),
        260,
    ),
    ("drain: from draining_since", rules.drain_timeout, worker(D, draining_since=100), 220),
    ("drain: no draining_since, from created_at", rules.drain_timeout, worker(D), 120),
    ("stuck: from started_at", stuck, task(started=40), 640),
    ("idle: from activation", idle, worker(A, activated_at=10), 40),
    (
        "idle: from the last task's end",
        idle,
        worker(A, activated_at=10, last_task_finished_at=500),
        530,
    ),
    ("idle: never activated, from created_at", idle, worker(A), 30),
]


@pytest.mark.parametrize(
    ("rule", "subject", "due"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_rule_is_breached_from_its_deadline_on(
    rule: Callable[..., Verdict], subject: object, due: float
) -> None:
    deadline = at(due)
    before = rule(subject, SETTINGS, deadline - TICK)
    assert before == Verdict(breached=False, deadline=deadline)
    assert before.changes_at == deadline
    for now in (deadline, deadline + TICK, deadline + timedelta(days=1)):
        verdict = rule(subject, SETTINGS, now)
        assert verdict == Verdict(breached=True, deadline=deadline)
        assert verdict.changes_at is None  # absent events, it stays breached
    assert rule(subject, SETTINGS, T0 - timedelta(days=1)).changes_at == deadline


@pytest.mark.parametrize(
    ("rule", "subject"),
    [
        (rules.spawn_timeout, worker(A)),
        (rules.spawn_timeout, worker(D)),
        (rules.heartbeat_timeout, worker(S)),  # the spawn timeout judges it instead
        (rules.drain_timeout, worker(A, draining_since=0)),
        (rules.drain_timeout, worker(S)),
        (idle, worker(S)),
        (idle, worker(D, draining_since=0)),  # already draining
        (stuck, task(started=None)),
    ],
    ids=[
        "spawn/active",
        "spawn/draining",
        "heartbeat/spawning",
        "drain/active",
        "drain/spawning",
        "idle/spawning",
        "idle/draining",
        "stuck/not started",
    ],
)
def test_a_rule_that_does_not_apply_is_never_breached_and_has_no_deadline(
    rule: WorkerRule, subject: WorkerState
) -> None:
    for now in (T0, at(10_000)):
        verdict = rule(subject, SETTINGS, now)
        assert verdict == NOT_APPLICABLE and verdict.changes_at is None


def test_the_idle_rule_leaves_a_busy_worker_alone() -> None:
    busy = worker(A, activated_at=0)
    assert rules.idle_timeout(busy, (task(started=5),), SETTINGS, at(10_000)) == NOT_APPLICABLE
    assert rules.idle_timeout(busy, (), SETTINGS, at(10_000)).breached


def test_fractional_limits_are_exact_to_the_microsecond() -> None:
    s = Settings(_env_file=None, SPAWNING_TIMEOUT_SEC=0.5)  # type: ignore[call-arg]
    deadline = T0 + timedelta(milliseconds=500)
    assert not rules.spawn_timeout(worker(S), s, deadline - TICK).breached
    assert rules.spawn_timeout(worker(S), s, deadline) == Verdict(True, deadline)


def test_last_sign_of_life_falls_back_to_activation_then_creation() -> None:
    assert rules.last_sign_of_life(worker(A, activated_at=5, last_heartbeat=9)) == at(9)
    assert rules.last_sign_of_life(worker(A, activated_at=5)) == at(5)
    assert rules.last_sign_of_life(worker(A)) == T0


def test_verdicts_cover_every_rule_of_every_worker_and_task() -> None:
    spawning = WorkerState(id="s", status=S, created_at=T0)
    draining = WorkerState(id="d", status=D, created_at=T0, draining_since=at(100))
    snap = Snapshot(
        now=at(1),
        queued=0,
        in_progress=1,
        workers=(spawning, draining),
        running=(TaskState(id="t", worker_id="d", attempts=1, started_at=at(0)),),
    )
    deadlines = sorted(v.deadline for v in rules.verdicts(snap, SETTINGS) if v.deadline)
    # spawn 300; draining: heartbeat from creation 60, drain 100 + 120; stuck 600
    assert deadlines == [at(60), at(220), at(300), at(600)]


def test_a_snapshot_indexes_its_workers_and_their_tasks() -> None:
    w1 = WorkerState("w1", WorkerStatus.ACTIVE, created_at=T0)
    w2 = WorkerState("w2", WorkerStatus.SPAWNING, created_at=T0)
    tasks = (
        TaskState("t1", "w1", 1, T0),
        TaskState("t2", "gone", 1, T0),
        TaskState("t3", "w1", 1, T0),
        TaskState("t4", None, 1, None),
    )
    snap = Snapshot(now=T0, queued=0, in_progress=4, workers=(w1, w2), running=tasks)
    assert snap.worker("w1") is w1 and snap.worker("w2") is w2 and snap.worker("x") is None
    assert [t.id for t in snap.tasks_of("w1")] == ["t1", "t3"]
    assert snap.tasks_of("w2") == [] and [t.id for t in snap.tasks_of("gone")] == ["t2"]
    assert snap == Snapshot(now=T0, queued=0, in_progress=4, workers=(w1, w2), running=tasks)


@pytest.mark.parametrize("status", list(WorkerStatus))
def test_verdicts_leave_out_only_rules_that_do_not_apply_to_the_status(
    status: WorkerStatus,
) -> None:
    w = WorkerState("w", status, created_at=T0, activated_at=T0, draining_since=T0)
    snap = Snapshot(now=at(10), queued=0, in_progress=0, workers=(w,))
    every = [
        rules.spawn_timeout(w, SETTINGS, snap.now),
        rules.heartbeat_timeout(w, SETTINGS, snap.now),
        rules.drain_timeout(w, SETTINGS, snap.now),
        rules.idle_timeout(w, [], SETTINGS, snap.now),
    ]
    asked = list(rules.verdicts(snap, SETTINGS))
    assert [v for v in every if v != NOT_APPLICABLE] == [v for v in asked if v != NOT_APPLICABLE]


def test_the_verdicts_are_judged_once_per_snapshot_and_settings() -> None:
    w = WorkerState("w", WorkerStatus.ACTIVE, created_at=T0, activated_at=T0)
    snap = Snapshot(now=at(100), queued=0, in_progress=0, workers=(w,))
    first = rules.judge(snap, SETTINGS)
    assert rules.judge(snap, SETTINGS) is first
    other = Settings(_env_file=None, GPU_IDLE_TIMEOUT_SEC=500)  # type: ignore[call-arg]
    again = rules.judge(snap, other)
    assert again is not first and not again.workers["w"].heartbeat.breached
    assert first.workers["w"].heartbeat.breached  # 100 s silent against 60 s
    assert rules.judge(Snapshot(now=at(100), queued=0, in_progress=0, workers=(w,)), SETTINGS)


# Moments and limits all multiples of 30 s: "now" often falls exactly on a deadline.
_MOMENT = st.one_of(st.none(), st.integers(min_value=0, max_value=40).map(lambda k: at(30 * k)))


@st.composite
def _fleets(draw: st.DrawFn) -> Snapshot:
    workers = tuple(
        WorkerState(
            f"w{i}",
            draw(st.sampled_from(list(WorkerStatus))),
            created_at=T0,
            activated_at=draw(_MOMENT),
            last_heartbeat=draw(_MOMENT),
            draining_since=draw(_MOMENT),
            last_task_finished_at=draw(_MOMENT),
        )
        for i in range(draw(st.integers(min_value=0, max_value=6)))
    )
    ids = [w.id for w in workers] + [None, "gone"]
    running = tuple(
        TaskState(
            f"t{i}",
            draw(st.sampled_from(ids)),
            attempts=1,
            started_at=draw(_MOMENT),
            task_type=draw(st.sampled_from(["render", "travel_orchestrator", None])),
        )
        for i in range(draw(st.integers(min_value=0, max_value=6)))
    )
    now = at(30 * draw(st.integers(min_value=0, max_value=80)))
    arrivals = draw(st.sampled_from([0, 3, 30, 300]))
    return Snapshot(
        now=now,
        queued=0,
        in_progress=len(running),
        workers=workers,
        running=running,
        arrivals=arrivals,
        arrivals_since=now if arrivals else None,
    )


@given(snap=_fleets(), exempt=st.booleans(), policy=st.sampled_from(["fixed", "break-even"]))
def test_the_judgement_answers_what_every_rule_answers(
    snap: Snapshot, exempt: bool, policy: str
) -> None:
    # judge() writes the common rules out for speed: it must still say what they say.
    settings = SETTINGS.model_copy(
        update={
            "stuck_task_exempt_types": ["%_orchestrator"] if exempt else [],
            "scale_down_policy": policy,
        }
    )
    judged = rules.judge(snap, settings)
    keep = breakeven.keep_windows(snap, settings)
    now = snap.now
    for w in snap.workers:
        kept = None if keep is None else keep.get(w.id)
        assert judged.workers[w.id] == rules.WorkerVerdicts(
            rules.spawn_timeout(w, settings, now),
            rules.heartbeat_timeout(w, settings, now),
            rules.drain_timeout(w, settings, now),
            rules.idle_timeout(w, snap.tasks_of(w.id), settings, now, kept),
        )
    assert judged.tasks == tuple(rules.stuck_timeout(t, settings, now) for t in snap.running)
