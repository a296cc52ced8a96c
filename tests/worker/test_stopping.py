"""How a worker stops: SIGKILL, SIGTERM (graceful, second signal, grace run out) and the
reactor's 'terminating' status."""

from __future__ import annotations

import signal

import asyncpg

from tests.worker.helpers import queue, task, wait_status, wait_until
from tests.worker.procs import WorkerProcs


async def drained_at(conn: asyncpg.Connection, worker_id: str) -> str | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT metadata->>'drained_at' FROM workers WHERE id = $1", worker_id
    )


async def test_sigkill_mid_task_leaves_it_for_recovery_and_another_worker_completes_it(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    task_id = await queue(conn, "sleep", {"seconds": 2})
    (doomed,) = worker_procs.start()
    await wait_status(conn, task_id, "In Progress")
    doomed.kill()
    assert doomed.returncode == -signal.SIGKILL

    held = await task(conn, task_id)
    assert (held["status"], held["worker_id"], held["attempts"]) == (
        "In Progress",
        doomed.worker_id,
        1,
    )
    reset = await conn.fetch(
        "SELECT * FROM gpu_reactor.func_reset_orphaned_tasks($1)", [doomed.worker_id]
    )
    assert [(r["task_id"], r["new_status"]) for r in reset] == [(task_id, "Queued")]

    (rescuer,) = worker_procs.start()
    done = await wait_status(conn, task_id, "Complete", timeout=15)
    assert (done["worker_id"], done["attempts"], done["result"]) == (
        rescuer.worker_id,
        2,
        {"slept": 2},
    )
    assert worker_procs.stop_all() == {doomed.worker_id: -signal.SIGKILL, rescuer.worker_id: 0}


async def test_sigterm_during_a_task_completes_it_then_exits_0(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    task_id = await queue(conn, "sleep", {"seconds": 1})
    waiting = await queue(conn, "echo", {}, priority=-1)
    (worker,) = worker_procs.start()
    await wait_status(conn, task_id, "In Progress")
    worker.signal(signal.SIGTERM)
    assert await worker.wait_async(15) == 0
    done = await task(conn, task_id)
    assert (done["status"], done["result"], done["attempts"]) == ("Complete", {"slept": 1}, 1)
    assert (await task(conn, waiting))["status"] == "Queued", "claimed after SIGTERM"
    assert await drained_at(conn, worker.worker_id) is not None


async def test_second_sigterm_fails_the_task_back_honestly(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    task_id = await queue(conn, "sleep", {"seconds": 60})
    (worker,) = worker_procs.start()
    await wait_status(conn, task_id, "In Progress")
    worker.signal(signal.SIGTERM)
    await worker.wait_for_event("drain_requested")
    worker.signal(signal.SIGTERM)
    assert await worker.wait_async(15) == 1
    back = await task(conn, task_id)
    assert (back["status"], back["attempts"], back["worker_id"]) == ("Queued", 1, None)
    assert back["error_message"] == ("worker stopped (SIGTERM) before finishing: second SIGTERM")
    assert await drained_at(conn, worker.worker_id) is not None


async def test_past_the_grace_period_the_task_is_failed_back(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    task_id = await queue(conn, "sleep", {"seconds": 60}, max_attempts=1)
    (worker,) = worker_procs.start(env={"WORKER_GRACE_SEC": "0.3"})
    await wait_status(conn, task_id, "In Progress")
    worker.signal(signal.SIGTERM)
    assert await worker.wait_async(15) == 1
    back = await task(conn, task_id)
    # max_attempts = 1: the attempt counted, nothing left, so Failed rather than Queued.
    assert (back["status"], back["attempts"]) == ("Failed", 1)
    assert back["error_message"] == (
        "worker stopped (SIGTERM) before finishing: grace period of 0.3s passed"
    )


async def test_terminating_status_stops_claiming_finishes_the_task_and_exits_0(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    running = await queue(conn, "sleep", {"seconds": 1})
    (worker,) = worker_procs.start(env={"HEARTBEAT_INTERVAL_SEC": "60"})
    await wait_status(conn, running, "In Progress")
    await conn.execute("UPDATE workers SET status = 'terminating' WHERE id = $1", worker.worker_id)
    later = await queue(conn, "echo", {"n": 1})
    # The status change reaches the worker through NOTIFY -> an immediate heartbeat, not
    # through the 60 s heartbeat interval.
    assert await worker.wait_async(10) == 0
    assert (await task(conn, running))["status"] == "Complete"
    assert (await task(conn, later))["status"] == "Queued"
    assert await drained_at(conn, worker.worker_id) is not None
    exited = worker.events("worker_exited")[0]
    assert exited["reason"] == "status terminating" and exited["tasks_completed"] == 1


async def test_an_idle_worker_told_to_terminate_by_its_heartbeat_exits_0(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    (worker,) = worker_procs.start()
    await wait_until(
        lambda: conn.fetchval(
            "SELECT status = 'active' FROM workers WHERE id = $1", worker.worker_id
        ),
        what="the worker to register",
    )
    await conn.execute(
        "UPDATE workers SET status = 'error', error_reason = 'test' WHERE id = $1", worker.worker_id
    )
    assert await worker.wait_async(10) == 0
    assert worker.events("worker_exited")[0]["reason"] == "status error"


async def test_a_crashed_heartbeat_stops_the_worker_after_its_task(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    running = await queue(conn, "sleep", {"seconds": 1})
    (worker,) = worker_procs.start()
    await wait_status(conn, running, "In Progress")
    # Not a lost connection but a real error: the heartbeat task dies, the worker stops
    # claiming, finishes the task in hand and exits non-zero for a supervisor to notice.
    await conn.execute(
        "REVOKE EXECUTE ON FUNCTION gpu_reactor.func_update_worker_heartbeat(text, jsonb)"
        " FROM gpu_worker"
    )
    later = await queue(conn, "echo", {}, priority=-1)
    assert await worker.wait_async(10) == 1
    assert (await task(conn, running))["status"] == "Complete"
    assert (await task(conn, later))["status"] == "Queued"
    crashed = worker.events("task_crashed")
    assert [c["task"] for c in crashed] == ["heartbeat"]
    assert "InsufficientPrivilegeError" in crashed[0]["error"]


async def test_a_restarted_worker_hands_back_what_its_previous_life_held(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    task_id = await queue(conn, "echo", {"x": 1})
    # A previous process under this id claimed the task and died before answering.
    await conn.execute(
        "SELECT gpu_reactor.func_update_worker_heartbeat('test-worker-reborn', '{}')"
    )
    claimed = await conn.fetchrow(
        "SELECT * FROM gpu_reactor.func_claim_available_task('test-worker-reborn')"
    )
    assert claimed["id"] == task_id
    (reborn,) = worker_procs.start(worker_id="test-worker-reborn")
    done = await wait_status(conn, task_id, "Complete", timeout=15)
    assert (done["worker_id"], done["attempts"]) == ("test-worker-reborn", 2)
    assert reborn.events("held_tasks_released")[0]["tasks"] == 1
    assert worker_procs.stop_all() == {"test-worker-reborn": 0}
