"""Scenario 7: a poison task whose processor takes its worker down every time.

Each claim of it kills the worker process (``os._exit`` inside the processor): the pod
goes EXITED, the reactor retires the worker and requeues the task, counting the lost
attempt. After max_attempts it must end Failed, with as many executions as attempts,
while the fleet completes every other task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.faults.rig import FaultRig
from tests.metrics import metric_value


async def test_a_poison_task_fails_after_max_attempts_and_the_rest_completes(
    rig: FaultRig, record_figures: Callable[[dict[str, Any]], None]
) -> None:
    rig.configure(MAX_ACTIVE_GPUS=2, TASKS_PER_GPU_THRESHOLD=3)
    async with rig.running(rig.settings()) as reactor:
        [poison] = await rig.insert(1, kind="poison", max_attempts=3)
        await rig.insert(12, seconds=0.2)
        await rig.settle(timeout=60)
        await rig.drain_to_zero()
        row = (
            await rig.fetch(
                "SELECT status::text AS status, attempts, error_message "
                "FROM tasks WHERE id = $1::uuid",
                poison,
            )
        )[0]
        assert row["status"] == "Failed" and row["attempts"] == 3
        assert "no attempts left" in row["error_message"]
        lost = sum(
            metric_value(reactor.metrics, "gpu_reactor_tasks_requeued_total", reason=r)
            for r in ("heartbeat", "pod_dead", "orphaned")
        )
        assert lost == 3, f"{lost} requeues for 3 lost attempts"
    rig.faults["worker crash (poison task)"] = len(rig.ledger.executions()[poison])
    record_figures(await rig.verify())
