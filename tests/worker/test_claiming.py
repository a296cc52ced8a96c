"""Several worker processes against a real Postgres: every task done exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import asyncpg

from tests.worker.helpers import queue, queue_many, task, wait_status, wait_until
from tests.worker.procs import WorkerProcs
from tests.worker.sample_processors import LEDGER_ENV

N_TASKS = 500


async def test_many_workers_complete_each_task_exactly_once(
    conn: asyncpg.Connection, worker_procs: WorkerProcs, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    workers = worker_procs.start(
        3,
        env={
            "WORKER_PROCESSORS": "record=tests.worker.sample_processors:record",
            LEDGER_ENV: str(ledger),
        },
    )
    # All of them idle and listening, so they race for the same tasks.
    for worker in workers:
        await worker.wait_for_event("listener_connected")
    ids = await queue_many(conn, "record", [{"key": i} for i in range(N_TASKS)])

    async def all_complete() -> bool:
        done = await conn.fetchval("SELECT count(*) FROM tasks WHERE status = 'Complete'")
        return done == N_TASKS

    await wait_until(all_complete, timeout=40, what=f"{N_TASKS} tasks to complete")
    codes = worker_procs.stop_all()

    assert set(codes.values()) == {0}, codes
    processed = Counter(ledger.read_text().split())
    assert len(processed) == N_TASKS
    assert processed.most_common(1)[0][1] == 1, "a task was processed twice"
    rows = await conn.fetch(
        "SELECT attempts, worker_id, result_data->>'key' AS key FROM tasks WHERE id = ANY($1)", ids
    )
    assert {r["attempts"] for r in rows} == {1}
    assert sorted(int(r["key"]) for r in rows) == list(range(N_TASKS))
    by_worker = Counter(r["worker_id"] for r in rows)
    assert set(by_worker) <= {w.worker_id for w in workers}
    assert len(by_worker) >= 2, f"one worker did everything: {by_worker}"
    completed = sum(len(w.events("task_completed")) for w in workers)
    assert completed == N_TASKS


async def test_notify_wakes_an_idle_worker_long_before_the_poll(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    (worker,) = worker_procs.start(env={"POLL_INTERVAL_SEC": "60"})
    await worker.wait_for_event("listener_connected")
    # Idle: the worker waits on LISTEN; the 60 s poll would fail these 5 s waits.
    first = await queue(conn, "echo", {"n": 1})
    await wait_status(conn, first, "Complete", timeout=5)
    second = await queue(conn, "echo", {"n": 2})
    assert (await wait_status(conn, second, "Complete", timeout=5))["result"] == {"n": 2}
    assert worker_procs.stop_all() == {worker.worker_id: 0}


async def test_task_types_limit_what_a_worker_claims(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    sleep_task = await queue(conn, "sleep", {"seconds": 0}, priority=10)
    echo_task = await queue(conn, "echo", {"hello": "world"})
    (worker,) = worker_procs.start(env={"WORKER_TASK_TYPES": "echo"})
    done = await wait_status(conn, echo_task, "Complete")
    assert done["result"] == {"hello": "world"} and done["worker_id"] == worker.worker_id
    assert (await task(conn, sleep_task))["status"] == "Queued"
    assert worker_procs.stop_all() == {worker.worker_id: 0}


async def test_task_type_globs_claim_the_types_they_match_and_no_other(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    flux = await queue(conn, "flux_x", {"n": 0}, priority=10)
    wan_like = await queue(conn, "wan", {"n": 1}, priority=5)  # wan_* needs the _
    wan = await queue(conn, "wan_2_1", {"n": 2})
    (worker,) = worker_procs.start(
        env={"WORKER_TASK_TYPES": "wan_*", "WORKER_PROCESSORS": "wan_2_1=echo,flux_x=echo"}
    )
    done = await wait_status(conn, wan, "Complete")
    assert done["result"] == {"n": 2} and done["worker_id"] == worker.worker_id
    # Claimed after the higher-priority ones had been passed over: they are not its types.
    assert (await task(conn, flux))["status"] == "Queued"
    assert (await task(conn, wan_like))["status"] == "Queued"
    # Only the processors of the types it claims are loaded.
    (started,) = worker.events("worker_started")
    assert started["processors"] == {"echo": "echo", "sleep": "sleep", "wan_2_1": "echo"}
    assert worker_procs.stop_all() == {worker.worker_id: 0}
