"""The pure policy: tables of cases and hypothesis, no I/O."""

from __future__ import annotations

from datetime import timedelta

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
from reactor.domain.model import (
    Limits,
    Snapshot,
    TaskState,
    WorkerState,
)
from reactor.domain.policy import decide, next_deadline
from reactor.domain.rules import desired_workers
from tests.domain.builders import NOW, ago, kinds, make_settings, pod, snap, task, worker

# --- scaling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queued", "minimum", "maximum", "per_gpu", "expected"),
    [
        (0, 0, 4, 2, 0),
        (1, 0, 4, 2, 1),
        (2, 0, 4, 2, 1),
        (3, 0, 4, 2, 2),
        (100, 0, 4, 2, 4),
        (0, 1, 4, 2, 1),
        (0, 3, 3, 1, 3),
    ],
)
def test_desired_is_clamped_ceiling(
    queued: int, minimum: int, maximum: int, per_gpu: int, expected: int
) -> None:
    s = make_settings(
        MIN_ACTIVE_GPUS=minimum, MAX_ACTIVE_GPUS=maximum, TASKS_PER_GPU_THRESHOLD=per_gpu
    )
    assert desired_workers(snap(queued), s) == expected


def test_single_task_on_idle_system_spawns_one() -> None:
    actions = decide(snap(queued=1), make_settings())
    assert kinds(actions) == ["spawn"]


def test_spawning_workers_count_as_capacity() -> None:
    s = make_settings()
    actions = decide(
        snap(queued=3, workers=(worker("a", "spawning", age=20), worker("b", "spawning", age=20))),
        s,
    )
    assert actions == []


def test_burst_spawns_up_to_max_only() -> None:
    actions = decide(snap(queued=10_000), make_settings(MAX_ACTIVE_GPUS=3))
    assert kinds(actions) == ["spawn"] * 3


def test_draining_workers_count_against_max_but_not_capacity() -> None:
    s = make_settings(MAX_ACTIVE_GPUS=2)
    draining = worker("d", "terminating", draining_since=ago(5))
    actions = decide(snap(queued=10, workers=(draining,), running=(task("t", "d"),)), s)
    assert kinds(actions) == ["spawn"]


def test_budget_caps_spawns() -> None:
    s = make_settings(MAX_ACTIVE_GPUS=10, MAX_HOURLY_SPEND_USD=2.5)
    live = (worker("a", cost_per_hr=1.0),)
    actions = decide(
        snap(queued=100, workers=live, running=(task("t", "a"),)), s, Limits(expected_price=0.7)
    )
    assert kinds(actions) == ["spawn", "spawn"]  # 1.0 + 2*0.7 = 2.4 <= 2.5 < 3.1


def test_spawn_backoff_blocks_spawns() -> None:
    limits = Limits(spawn_blocked_until=NOW + timedelta(seconds=5), spawn_blocked_reason="402")
    assert decide(snap(queued=5), make_settings(), limits) == []


def test_unconfirmed_pods_count_against_max() -> None:
    s = make_settings(MAX_ACTIVE_GPUS=2)
    actions = decide(snap(queued=50), s, Limits(unconfirmed_pods=1))
    assert kinds(actions) == ["spawn"]


def test_scale_down_drains_only_idle_workers_past_idle_time() -> None:
    s = make_settings(SCALE_DOWN_IDLE_SEC=30)
    busy = worker("busy")
    idle_long = worker("idle-long", idle=100)
    idle_short = worker("idle-short", idle=5)
    actions = decide(snap(workers=(busy, idle_long, idle_short), running=(task("t", "busy"),)), s)
    [drain] = actions
    assert drain == Drain("idle-long", reason=drain.reason, cause=Cause.IDLE)  # type: ignore[union-attr]


def test_scale_down_keeps_min() -> None:
    s = make_settings(MIN_ACTIVE_GPUS=2)
    workers = tuple(worker(f"w{i}", idle=1000) for i in range(3))
    actions = decide(snap(workers=workers), s)
    assert len(actions) == 1 and isinstance(actions[0], Drain)


def test_young_worker_is_not_scaled_down() -> None:
    s = make_settings(SCALE_DOWN_IDLE_SEC=30)
    young = worker("young", age=15)  # activated 5 s ago, never had a task
    assert decide(snap(workers=(young,)), s) == []


# --- recovery --------------------------------------------------------------------------


def test_stale_heartbeat_retires_requeues_and_replaces() -> None:
    s = make_settings(GPU_IDLE_TIMEOUT_SEC=60)
    dead = worker("dead", beat=61)
    actions = decide(snap(queued=0, workers=(dead,), running=(task("t", "dead"),)), s)
    assert isinstance(actions[0], Retire) and actions[0].status == "error"
    assert actions[0].cause == "heartbeat"
    assert kinds(actions[1:]) == ["spawn"]  # its task still needs a worker


def test_spawning_timeout_retires() -> None:
    s = make_settings(SPAWNING_TIMEOUT_SEC=300)
    slow = worker("slow", "spawning", age=301)
    actions = decide(snap(workers=(slow,)), s)
    assert isinstance(actions[0], Retire) and actions[0].cause == "spawn_timeout"


def test_drained_worker_without_task_is_terminated() -> None:
    w = worker("d", "terminating", draining_since=ago(1))
    actions = decide(snap(workers=(w,)), make_settings())
    assert isinstance(actions[0], Retire)
    assert (actions[0].status, actions[0].cause) == ("terminated", "drained")


def test_drain_waits_for_task_then_times_out() -> None:
    s = make_settings(GRACEFUL_SHUTDOWN_TIMEOUT_SEC=120)
    busy = worker("d", "terminating", draining_since=ago(60))
    assert [
        a
        for a in decide(snap(workers=(busy,), running=(task("t", "d"),)), s)
        if isinstance(a, Retire)
    ] == []
    late = worker("d", "terminating", draining_since=ago(121))
    actions = decide(snap(workers=(late,), running=(task("t", "d"),)), s)
    assert isinstance(actions[0], Retire) and actions[0].cause == "drain_timeout"


def test_stuck_task_is_requeued_fenced_and_worker_drained() -> None:
    s = make_settings(TASK_STUCK_TIMEOUT_SEC=600)
    w = worker("w")
    actions = decide(snap(workers=(w,), running=(task("t", "w", started=601, attempts=2),)), s)
    assert actions[0] == RequeueTask("t", "w", 2, reason=actions[0].reason)  # type: ignore[attr-defined]
    assert isinstance(actions[1], Drain) and actions[1].worker_id == "w"
    assert (actions[0].cause, actions[1].cause) == (Cause.STUCK, Cause.STUCK)


def test_task_of_unknown_worker_is_requeued() -> None:
    actions = decide(snap(running=(task("t", "ghost"),)), make_settings())
    assert isinstance(actions[0], RequeueOrphans) and actions[0].worker_ids == ("ghost",)


# --- the sweep against the provider's pods -------------------------------------------------


def test_sweep_terminates_unexplained_fleet_pod_only() -> None:
    s = make_settings()
    w = worker("gpu-reactor-aaaa", pod_id="p1")
    pods = (
        pod("p1", "gpu-reactor-aaaa"),
        pod("p2", "gpu-reactor-bbbb"),  # ours, unexplained
        pod("p3", "notebook", fleet=None),  # someone else's
        pod("p4", "gpu-reactor-cccc", fleet=None),  # name only: not ours
        pod("p5", "other-dddd", fleet="gpu-reactor"),
    )  # marker only: not ours
    actions = decide(snap(workers=(w,), running=(task("t", w.id),), pods=pods), s)
    assert [a for a in actions if isinstance(a, TerminatePod)] == [
        TerminatePod("p2", "gpu-reactor-bbbb", reason=actions[0].reason)
    ]  # type: ignore[attr-defined]


def test_sweep_retires_row_whose_pod_vanished() -> None:
    w = worker("gpu-reactor-aaaa", pod_id="p1")
    actions = decide(snap(workers=(w,), pods=()), make_settings(MIN_ACTIVE_GPUS=0))
    assert isinstance(actions[0], Retire) and actions[0].cause == "pod_missing"


def test_sweep_attaches_pod_found_by_name() -> None:
    w = worker("gpu-reactor-aaaa", "spawning", age=100, pod_id=None)
    actions = decide(
        snap(queued=1, workers=(w,), pods=(pod("p9", "gpu-reactor-aaaa"),)), make_settings()
    )
    assert actions == [AttachPod("gpu-reactor-aaaa", "p9")]


def test_sweep_leaves_young_intent_alone() -> None:
    w = worker("gpu-reactor-aaaa", "spawning", age=5, pod_id=None)
    assert decide(snap(queued=1, workers=(w,), pods=()), make_settings()) == []


def test_each_step_hands_on_the_workers_it_ends_or_drains() -> None:
    s = make_settings(TASKS_PER_GPU_THRESHOLD=1)
    dead = worker("gpu-reactor-dead", beat=61, pod_id="p1")  # retired: its stuck task is not
    stuck = worker("gpu-reactor-stuck", pod_id="p2")  # drained for its stuck task
    gone = worker("gpu-reactor-gone", pod_id="p3")  # its pod vanished: retired by the sweep
    running = (task("t1", dead.id, started=700), task("t2", stuck.id, started=700))
    pods = (pod("p1", dead.id), pod("p2", stuck.id))
    actions = decide(snap(1, (dead, stuck, gone), running, pods=pods), s)
    assert [(a.kind, a.cause) for a in actions] == [
        ("retire", Cause.HEARTBEAT),
        ("requeue_task", Cause.STUCK),
        ("drain", Cause.STUCK),
        ("retire", Cause.POD_MISSING),
        ("spawn", Cause.SCALE_UP),  # none of the three is capacity: 3 tasks, 3 spawns
        ("spawn", Cause.SCALE_UP),
        ("spawn", Cause.SCALE_UP),
    ]
    assert [a.task_id for a in actions if isinstance(a, RequeueTask)] == ["t2"]


# --- tasks waiting out a retry delay -------------------------------------------------------


def test_tasks_waiting_for_a_retry_are_demand_only_once_due() -> None:
    s = make_settings(TASKS_PER_GPU_THRESHOLD=1, SCALE_DOWN_IDLE_SEC=30)
    idle = worker("gpu-reactor-idle", idle=100)
    due_at = NOW + timedelta(seconds=600)
    waiting = Snapshot(
        now=NOW, queued=3, in_progress=0, workers=(idle,), waiting=3, next_retry_at=due_at
    )
    assert desired_workers(waiting, s) == 0
    assert kinds(decide(waiting, s)) == ["drain"]  # no GPU idles ten minutes for them
    assert (
        next_deadline(
            Snapshot(now=NOW, queued=3, in_progress=0, waiting=3, next_retry_at=due_at), s
        )
        == due_at
    )
    one_due = Snapshot(now=NOW, queued=3, in_progress=0, waiting=2, next_retry_at=due_at)
    assert kinds(decide(one_due, s)) == ["spawn"]


# --- pods that never start -----------------------------------------------------------------


def test_retirements_before_a_first_heartbeat_are_start_failures() -> None:
    s = make_settings(SPAWNING_TIMEOUT_SEC=300)
    late = worker("gpu-reactor-late", "spawning", age=400, pod_id="p1")
    exited = worker("gpu-reactor-exit", "spawning", age=100, pod_id="p2")
    vanished = worker("gpu-reactor-gone", "spawning", age=100, pod_id="p3")
    crashed = worker("gpu-reactor-busy", "active", pod_id="p4")
    pods = (
        pod("p1", late.id),
        pod("p2", exited.id, status="EXITED"),
        pod("p4", crashed.id, status="EXITED"),
    )
    actions = decide(snap(workers=(late, exited, vanished, crashed), pods=pods), s)
    causes = {a.worker_id: (a.cause, a.start_failed) for a in actions if isinstance(a, Retire)}
    assert causes == {
        late.id: ("spawn_timeout", True),
        exited.id: ("pod_dead", True),
        vanished.id: ("pod_missing", True),
        crashed.id: ("pod_dead", False),
    }


@pytest.mark.parametrize(
    ("failures", "starting", "spawns"),
    [(0, 0, 4), (2, 0, 4), (3, 0, 1), (9, 0, 1), (3, 1, 0), (2, 1, 3)],
)
def test_after_repeated_start_failures_one_probe_pod_at_a_time(
    failures: int, starting: int, spawns: int
) -> None:
    s = make_settings(MAX_ACTIVE_GPUS=4, TASKS_PER_GPU_THRESHOLD=1)
    workers = tuple(worker(f"gpu-reactor-s{i}", "spawning", age=10) for i in range(starting))
    actions = decide(snap(queued=10, workers=workers), s, Limits(start_failures=failures))
    assert sum(isinstance(a, Spawn) for a in actions) == spawns


def test_a_tiny_expected_price_does_not_break_the_budget_math() -> None:
    s = make_settings(MAX_ACTIVE_GPUS=3, MAX_HOURLY_SPEND_USD=1e6, TASKS_PER_GPU_THRESHOLD=1)
    actions = decide(snap(queued=10), s, Limits(expected_price=1e-310))
    assert sum(isinstance(a, Spawn) for a in actions) == 3


# --- the warm buffer (MACHINES_TO_KEEP_IDLE) --------------------------------------------

BUSY2 = (worker("a"), worker("b"))
ON_BUSY2 = (task("t1", "a"), task("t2", "b"))


@pytest.mark.parametrize(
    ("keep_idle", "queued", "workers", "running", "maximum", "minimum", "expected"),
    [
        (0, 0, (), (), 4, 0, 0),  # no buffer: nothing on an empty queue
        (2, 0, (), (), 4, 0, 2),  # a buffer on an empty queue: warm workers
        (2, 0, BUSY2, ON_BUSY2, 4, 0, 4),  # two busy + two idle
        (2, 0, BUSY2, ON_BUSY2, 3, 0, 3),  # within MAX
        (1, 6, BUSY2, ON_BUSY2, 8, 0, 4),  # the queue wants more than the buffer: ceil(8/2)
        (1, 0, (worker("a", "spawning", age=20),), (), 4, 0, 1),  # spawning is not busy
        (1, 0, (), (), 4, 3, 3),  # MIN above the buffer
    ],
)
def test_desired_keeps_the_idle_buffer_on_top_of_the_busy_workers(
    keep_idle: int,
    queued: int,
    workers: tuple[WorkerState, ...],
    running: tuple[TaskState, ...],
    maximum: int,
    minimum: int,
    expected: int,
) -> None:
    s = make_settings(
        MACHINES_TO_KEEP_IDLE=keep_idle, MAX_ACTIVE_GPUS=maximum, MIN_ACTIVE_GPUS=minimum
    )
    assert desired_workers(snap(queued, workers, running), s) == expected


def test_the_buffer_spawns_within_the_budget_and_is_not_drained() -> None:
    s = make_settings(MACHINES_TO_KEEP_IDLE=2, MAX_HOURLY_SPEND_USD=3)
    busy = snap(0, BUSY2, ON_BUSY2)
    assert kinds(decide(busy, s, Limits(expected_price=1.0))) == ["spawn"]  # $3/h: one more
    idle = (*BUSY2, worker("c", idle=500), worker("d", idle=500))
    assert decide(snap(0, idle, ON_BUSY2), make_settings(MACHINES_TO_KEEP_IDLE=2)) == []
