"""Scenario 6: workers SIGKILLed mid-task, and a worker that hangs.

A killed worker stops beating and its pod goes EXITED: the reactor must retire it,
requeue its task and replace it. A hung worker (SIGSTOP: the process lives, nothing
runs) looks the same to the reactor, but it comes back: its late completion must be
refused by the fence, so the task keeps the result of the worker that really finished it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.faults.invariants import Execution
from tests.faults.rig import FaultRig
from tests.metrics import metric_value
from tests.worker.procs import WorkerProcess


def _busy(rig: FaultRig, exclude: set[int] = frozenset()) -> tuple[Execution, WorkerProcess] | None:  # type: ignore[assignment]
    """A task being executed right now and the worker process executing it."""
    for execution in rig.ledger.running():
        proc = next((p for p in rig.pods.procs.procs if p.pid == execution.pid), None)
        if proc is not None and proc.alive and proc.pid not in exclude:
            return execution, proc
    return None


async def test_workers_killed_mid_task_are_replaced_and_nothing_is_lost(
    rig: FaultRig, record_figures: Callable[[dict[str, Any]], None]
) -> None:
    rig.configure(MAX_ACTIVE_GPUS=3, MAX_HOURLY_SPEND_USD=2.5)
    async with rig.running(rig.settings()):
        await rig.insert(12, seconds=1.0)
        killed: set[int] = set()
        for _ in range(3):
            execution, proc = await rig.until(
                lambda: _busy(rig, killed), timeout=20, what="a worker in the middle of a task"
            )
            rig.pods.kill(proc.worker_id)
            killed.add(proc.pid)
            rig.faults["worker SIGKILL mid-task"] += 1
        await rig.settle(timeout=60)
        await rig.drain_to_zero()
    figures = await rig.verify()
    assert figures["executions"] >= figures["tasks"] + 3, "every killed task ran again"
    record_figures(figures)


async def test_a_hung_worker_is_retired_and_its_late_completion_refused(
    rig: FaultRig, record_figures: Callable[[dict[str, Any]], None]
) -> None:
    # Two workers, two tasks; the survivor (kept: no idle scale-down) takes the hung
    # worker's task over, so no replacement is needed (see the replacement test below).
    rig.configure(MAX_ACTIVE_GPUS=2, TASKS_PER_GPU_THRESHOLD=1, SCALE_DOWN_IDLE_SEC=60)
    async with rig.running(rig.settings()) as reactor:
        await rig.insert(2, seconds=1.0)
        execution, hung = await rig.until(
            lambda: len(rig.pods.alive()) == 2 and _busy(rig),
            timeout=20,
            what="two workers, one in the middle of a task",
        )
        rig.pods.hold(hung.worker_id)  # its pod's terminate reaches it only on release
        rig.pods.freeze(hung.worker_id)
        rig.faults["worker SIGSTOP mid-task"] += 1

        async def finished_elsewhere() -> bool:
            rows = await rig.fetch(
                "SELECT status::text AS status, worker_id FROM tasks WHERE id = $1::uuid",
                execution.key,
            )
            return rows[0]["status"] == "Complete" and rows[0]["worker_id"] != hung.worker_id

        await rig.until(
            finished_elsewhere, timeout=20, what="the hung worker's task done by another"
        )
        assert hung.alive and hung.worker_id in rig.pods.terminated
        row = (
            await rig.fetch(
                "SELECT status, error_reason FROM workers WHERE id = $1", hung.worker_id
            )
        )[0]
        assert row["status"] == "error" and "heartbeat" in row["error_reason"]
        assert (
            metric_value(reactor.metrics, "gpu_reactor_tasks_requeued_total", reason="heartbeat")
            >= 1
        )

        rig.pods.thaw(hung.worker_id)
        refused = await hung.wait_for_event(
            "lease_lost", timeout=10, where=lambda r: r.get("task_id") == execution.key
        )
        assert refused["discarded"] == "result"
        assert not [r for r in hung.events("task_completed") if r["task_id"] == execution.key]
        rig.pods.release(hung.worker_id)
        await rig.settle(timeout=30)
        await rig.drain_by_operator()
        await rig.drain_to_zero()
    figures = await rig.verify()
    assert figures["refused_completions"] >= 1
    record_figures(figures)


async def test_a_replacement_pod_is_not_created_before_the_dead_one_is_gone(rig: FaultRig) -> None:
    rig.configure(MAX_ACTIVE_GPUS=1, MAX_HOURLY_SPEND_USD=1.0, TASKS_PER_GPU_THRESHOLD=1)
    async with rig.running(rig.settings()):
        await rig.insert(1, seconds=2.0)
        _, hung = await rig.until(lambda: _busy(rig), timeout=20, what="a busy worker")
        rig.pods.freeze(hung.worker_id)  # heartbeat stops; the pod stays RUNNING
        rig.runpod.faults.fail_next(1, status=503, method="DELETE")  # retried after ~0.2 s
        rig.faults["worker SIGSTOP mid-task"] += 1
        await rig.runpod.wait_for_create(count=2, timeout=15)
        rig.pods.thaw(hung.worker_id)
        await rig.settle(timeout=30)
        await rig.drain_to_zero()
    rig.checker.assert_held()
