"""The console's ring buffer of the last hour (reactor/engine/history.py), on fake time."""

from __future__ import annotations

from datetime import UTC, datetime

from reactor.domain.model import Snapshot, TaskState, WorkerState, WorkerStatus
from reactor.domain.pods import Pod
from reactor.engine.history import History

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _snap(queued: int, *workers: WorkerStatus, running: tuple[TaskState, ...] = ()) -> Snapshot:
    return Snapshot(
        now=T0,
        queued=queued,
        in_progress=len(running),
        workers=tuple(WorkerState(f"w{i}", s, T0, cost_per_hr=0.5) for i, s in enumerate(workers)),
        running=running,
        waiting=1 if queued else 0,
    )


def test_one_point_per_bucket_keeps_the_highest_of_each_series() -> None:
    history = History(bucket_sec=5, window_sec=60)
    history.add(_snap(9, WorkerStatus.SPAWNING), at=100.0)
    history.add(_snap(2, WorkerStatus.ACTIVE, WorkerStatus.ACTIVE), at=103.0)
    history.add(_snap(1, WorkerStatus.ACTIVE), at=106.0)
    first, second = history.samples(now=110.0)
    assert (first.at, first.queued, first.due, first.spawning, first.active) == (100, 9, 8, 1, 2)
    assert first.usd_per_hour == 1.0
    assert (second.at, second.queued, second.active) == (105, 1, 1)
    assert history.version == 3


def test_the_buffer_holds_one_window_and_forgets_older_points() -> None:
    history = History(bucket_sec=5, window_sec=60)
    for i in range(100):
        history.add(_snap(i), at=float(i * 5))
    points = history.samples(now=99 * 5.0)
    assert len(points) == 13 and points[0].at == 99 * 5 - 60
    assert [p[1] for p in history.wire(now=99 * 5.0, last=2)["points"]] == [98, 99]


def test_holders_are_noted_once_per_worker_and_attempt_and_bounded() -> None:
    history = History(tasks_remembered=2)
    t1 = TaskState("t1", "w0", 1, T0)
    history.add(_snap(0, WorkerStatus.ACTIVE, running=(t1,)), at=1.0)
    history.add(_snap(0, WorkerStatus.ACTIVE, running=(t1,)), at=2.0)
    history.add(_snap(0, WorkerStatus.ACTIVE, running=(TaskState("t1", "w1", 2, T0),)), at=3.0)
    assert [(h.worker_id, h.attempt, h.first_seen) for h in history.holders("t1")] == [
        ("w0", 1, 1.0),
        ("w1", 2, 3.0),
    ]
    assert [t for t, _ in history.tasks_held_by("w1")] == ["t1"]
    for name in ("t2", "t3"):
        history.add(_snap(0, running=(TaskState(name, "w0", 1, T0),)), at=4.0)
    assert history.holders("t1") == [] and history.holders("t3")


def test_a_sweeps_pod_list_is_kept_until_the_next_sweep() -> None:
    history = History()
    pod = Pod("p1", "gpu-reactor-1", "RUNNING", env={"SECRET": "x"})
    history.add(Snapshot(now=T0, queued=0, in_progress=0, pods=(pod,)), at=10.0)
    history.add(Snapshot(now=T0, queued=0, in_progress=0), at=11.0)  # an event reconcile
    assert history.pods == {"p1": pod} and history.pods_at == 10.0
