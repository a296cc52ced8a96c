"""A failing processor fails only its task; a lost lease discards the result."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg

from tests.util import wait_until
from tests.worker.helpers import process_alive, queue, task, wait_status
from tests.worker.procs import REPO, WorkerProcs

FAKE_PROGRAM = f"{sys.executable} {REPO / 'tests' / 'worker' / 'fake_program.py'}"
SAMPLES = "tests.worker.sample_processors"


async def test_failing_processors_fail_only_their_task_and_the_worker_carries_on(
    conn: asyncpg.Connection, worker_procs: WorkerProcs, tmp_path: Path
) -> None:
    pidfile = tmp_path / "hang.pid"
    # One at a time, in this order (priority), each with a single attempt.
    plan = [
        ("raises", None),
        ("py_hang", None),
        ("video", {"mode": "hang", "pidfile": str(pidfile)}),
        ("video", {"mode": "garbage"}),
        ("video", {"mode": "fail"}),
        ("unserialisable", None),
        ("nul_result", None),
        ("unknown_type", None),
        ("sleep", {"seconds": "soon"}),
    ]
    failing = [
        await queue(conn, t, p or {}, priority=100 - i, max_attempts=1)
        for i, (t, p) in enumerate(plan)
    ]
    video_ok = await queue(conn, "video", {"mode": "ok", "frames": 24}, priority=1)
    last = await queue(conn, "double", {"x": 21}, priority=0)
    (worker,) = worker_procs.start(
        env={
            "TASK_TIMEOUT_SEC": "0.5",
            "WORKER_COMMAND": FAKE_PROGRAM,
            "WORKER_PROCESSORS": f"video=command,raises={SAMPLES}:boom,py_hang={SAMPLES}:hang,"
            f"unserialisable={SAMPLES}:unserialisable,double={SAMPLES}:double,"
            f"nul_result={SAMPLES}:nul_result",
        }
    )

    assert (await wait_status(conn, last, "Complete", timeout=20))["result"] == {"double": 42}
    assert (await task(conn, video_ok))["result"] == {"ok": True, "frames": 24}
    errors = []
    for task_id in failing:
        row = await task(conn, task_id)
        assert (row["status"], row["attempts"], row["result"]) == ("Failed", 1, None), row
        errors.append(row["error_message"])
    raises, py_hang, cmd_hang, garbage, exit3, unserialisable, nul, unknown, bad_sleep = errors
    assert raises.startswith("ValueError: boom: the input was not acceptable\n")
    assert "sample_processors.py" in raises  # the traceback's tail
    assert py_hang == "timed out after 0.5s (TASK_TIMEOUT_SEC)"
    assert cmd_hang.startswith("command timed out after 0.5s (TASK_TIMEOUT_SEC); stderr tail:")
    assert "started, waiting forever" in cmd_hang
    assert not process_alive(int(pidfile.read_text())), "the hung program was not killed"
    assert garbage.startswith("command output is not a JSON result: stdout is not JSON")
    assert exit3 == "command exited with status 3; stderr tail:\nCUDA error: out of memory"
    assert unserialisable.startswith("result is not JSON-serialisable")
    assert nul.startswith("the result could not be stored: UntranslatableCharacterError")
    assert unknown.startswith("no processor for task type 'unknown_type' on worker ")
    assert bad_sleep == 'sleep needs params {"seconds": <number >= 0>}'
    assert worker_procs.stop_all() == {worker.worker_id: 0}
    assert len(worker.events("task_failed")) == len(plan)


async def test_a_failed_task_is_requeued_while_attempts_remain(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    task_id = await queue(conn, "raises", {}, max_attempts=2)
    (worker,) = worker_procs.start(env={"WORKER_PROCESSORS": f"raises={SAMPLES}:boom"})
    failed = await wait_status(conn, task_id, "Failed")
    assert failed["attempts"] == 2
    # The worker logs a failure after the database took it: wait for the second line.
    await wait_until(lambda: len(worker.events("task_failed")) >= 2, what="both failures logged")
    requeued = [e["requeued"] for e in worker.events("task_failed")]
    assert requeued == [True, False]
    assert worker_procs.stop_all() == {worker.worker_id: 0}


async def test_a_failed_task_waits_its_retry_delay_while_the_worker_takes_other_work(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    await conn.execute("UPDATE gpu_reactor.settings SET task_retry_delay_sec = 600")
    flaky = await queue(conn, "raises", {}, priority=10, max_attempts=2)
    other = await queue(conn, "double", {"x": 1}, priority=0)
    (worker,) = worker_procs.start(
        env={
            "POLL_INTERVAL_SEC": "0.2",
            "WORKER_PROCESSORS": f"raises={SAMPLES}:boom,double={SAMPLES}:double",
        }
    )
    await wait_status(conn, other, "Complete")
    row = await task(conn, flaky)
    assert (row["status"], row["attempts"], row["worker_id"]) == ("Queued", 1, None)
    # Due now: no notification says so (only the retry_at changes); the worker's poll finds it.
    await conn.execute("UPDATE tasks SET retry_at = now() WHERE id = $1", flaky)
    assert (await wait_status(conn, flaky, "Failed"))["attempts"] == 2
    assert [e["requeued"] for e in worker.events("task_failed")] == [True, False]
    assert worker_procs.stop_all() == {worker.worker_id: 0}


async def test_the_command_gets_task_context_but_not_the_database_url(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    task_id = await queue(conn, "video", {"mode": "env"})
    (worker,) = worker_procs.start(
        env={"WORKER_COMMAND": FAKE_PROGRAM, "WORKER_PROCESSORS": "video=command"}
    )
    done = await wait_status(conn, task_id, "Complete")
    assert done["result"] == {
        "GPU_REACTOR_TASK_ID": str(task_id),
        "GPU_REACTOR_TASK_TYPE": "video",
        "GPU_REACTOR_TASK_ATTEMPT": "1",
        "DATABASE_URL": None,
    }
    assert worker_procs.stop_all() == {worker.worker_id: 0}


async def test_lease_lost_discards_the_result_instead_of_overwriting(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    task_id = await queue(conn, "sleep", {"seconds": 2})
    (worker,) = worker_procs.start()
    await wait_status(conn, task_id, "In Progress")
    # The reactor takes the task back (stuck) and another worker claims attempt 2.
    assert (
        await conn.fetchval(
            "SELECT gpu_reactor.func_requeue_task($1, $2, 1, 'test: stuck')",
            task_id,
            worker.worker_id,
        )
        == "Queued"
    )
    await conn.execute("INSERT INTO workers (id, status) VALUES ('other', 'active')")
    claimed = await conn.fetchrow("SELECT * FROM gpu_reactor.func_claim_available_task('other')")
    assert claimed["id"] == task_id and claimed["attempts"] == 2

    lost = await worker.wait_for_event("lease_lost", timeout=10)
    assert (lost["task_id"], lost["attempt"], lost["discarded"]) == (str(task_id), 1, "result")
    row = await task(conn, task_id)
    assert (row["status"], row["worker_id"], row["attempts"], row["result"]) == (
        "In Progress",
        "other",
        2,
        None,
    )
    # ... and the worker carries on.
    after = await queue(conn, "echo", {"still": "working"})
    assert (await wait_status(conn, after, "Complete"))["worker_id"] == worker.worker_id
    assert worker_procs.stop_all() == {worker.worker_id: 0}
