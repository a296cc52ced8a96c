"""gpu_reactor.func_claim_available_task: one task per call, never twice, in order, only to
active workers."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime, timedelta

import asyncpg
import pytest

from tests.db.support import (
    add_task,
    add_tasks,
    add_worker,
    claim,
    close_all,
    connect_many,
    task_row,
)

CLAIMERS = 8
TASKS = 1000


async def _claim_until_empty(conn: asyncpg.Connection, worker_id: str) -> list[uuid.UUID]:
    claimed = []
    while (row := await claim(conn, worker_id)) is not None:
        claimed.append(row["id"])
    return claimed


async def test_concurrent_claimers_take_every_task_exactly_once(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    ids = await add_tasks(conn, TASKS)
    workers = [await add_worker(conn, f"w{i}") for i in range(CLAIMERS)]
    claimers = await connect_many(db_dsn, CLAIMERS)
    try:
        results = await asyncio.gather(
            *(_claim_until_empty(c, w) for c, w in zip(claimers, workers, strict=True))
        )
    finally:
        await close_all(claimers)

    claimed = [task for result in results for task in result]
    duplicates = [task for task, n in Counter(claimed).items() if n > 1]
    assert duplicates == []
    assert sorted(claimed) == sorted(ids)
    assert sum(1 for result in results if result) > 1, "the claimers did not run concurrently"

    holders = {
        task: worker for worker, result in zip(workers, results, strict=True) for task in result
    }
    rows = await conn.fetch("SELECT id, status, worker_id, attempts FROM tasks")
    assert {r["status"] for r in rows} == {"In Progress"}
    assert {r["attempts"] for r in rows} == {1}
    assert all(holders[r["id"]] == r["worker_id"] for r in rows)


async def test_claims_highest_priority_first_then_oldest(conn: asyncpg.Connection) -> None:
    await add_worker(conn, "w1")
    base = datetime.now().astimezone() - timedelta(hours=1)
    spec = [  # (name, priority, age offset in seconds from base)
        ("low-old", 0, 0),
        ("low-new", 0, 30),
        ("high-new", 5, 20),
        ("high-old", 5, 10),
        ("mid", 1, 5),
        ("negative", -3, 1),
        ("low-mid", 0, 15),
    ]
    names = {}
    for name, priority, offset in spec:
        task = await add_task(conn, priority=priority, created_at=base + timedelta(seconds=offset))
        names[task] = name

    order = []
    while (row := await claim(conn, "w1")) is not None:
        order.append(names[row["id"]])
    assert order == ["high-old", "high-new", "mid", "low-old", "low-mid", "low-new", "negative"]


async def test_task_types_filter(conn: asyncpg.Connection) -> None:
    await add_worker(conn, "w1")
    render = await add_task(conn, task_type="render")
    upscale = await add_task(conn, task_type="upscale", priority=10)
    await add_task(conn, task_type="train", priority=20)

    assert await claim(conn, "w1", ["nothing-like-this"]) is None
    assert await claim(conn, "w1", []) is None
    first = await claim(conn, "w1", ["render", "upscale"])
    second = await claim(conn, "w1", ["render", "upscale"])
    assert first is not None and second is not None
    assert (first["id"], second["id"]) == (upscale, render)
    assert await claim(conn, "w1", ["render", "upscale"]) is None
    anything = await claim(conn, "w1")
    assert anything is not None and anything["task_type"] == "train"


@pytest.mark.parametrize("status", ["spawning", "terminating", "error", "terminated", None])
async def test_a_worker_that_is_not_active_gets_nothing(
    conn: asyncpg.Connection, status: str | None
) -> None:
    task = await add_task(conn)
    if status is not None:
        await add_worker(conn, "w1", status)
    assert await claim(conn, "w1") is None
    row = await task_row(conn, task)
    assert (row["status"], row["worker_id"], row["attempts"]) == ("Queued", None, 0)
    # Control: the same task goes to an active worker.
    await add_worker(conn, "w-active")
    assert (await claim(conn, "w-active"))["id"] == task  # type: ignore[index]


async def test_claim_sets_in_progress_holder_start_and_counts_the_attempt(
    conn: asyncpg.Connection,
) -> None:
    await add_worker(conn, "w1")
    await add_worker(conn, "w2")
    task = await add_task(
        conn,
        params='{"prompt": "a cat"}',
        max_attempts=5,
        generation_processed_at=datetime.now().astimezone(),
    )
    before = await conn.fetchval("SELECT clock_timestamp()")

    row = await claim(conn, "w1")
    assert row is not None
    assert dict(row) == {
        "id": task,
        "task_type": "render",
        "params": '{"prompt": "a cat"}',
        "attempts": 1,
        "max_attempts": 5,
    }
    stored = await task_row(conn, task)
    assert stored["status"] == "In Progress"
    assert stored["worker_id"] == "w1"
    assert stored["generation_started_at"] >= before
    assert stored["generation_processed_at"] is None
    assert stored["attempts"] == 1

    # Failed back to the queue, claimed again by another worker: the attempt counts again.
    assert await conn.fetchval("SELECT gpu_reactor.func_mark_task_failed($1, 'oom', 'w1')", task)
    again = await claim(conn, "w2")
    assert again is not None and again["attempts"] == 2
    stored = await task_row(conn, task)
    assert (stored["status"], stored["worker_id"], stored["attempts"]) == ("In Progress", "w2", 2)


async def _waits_for_a_lock(
    observer: asyncpg.Connection, pid: int, claiming: asyncio.Task[object]
) -> bool:
    """Until the claim either finished or is seen waiting on a lock: which one it was."""
    deadline = asyncio.get_running_loop().time() + 5
    while not claiming.done():
        waiting = await observer.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )
        if waiting:
            return True
        assert asyncio.get_running_loop().time() < deadline, "claim neither ran nor waited"
        await asyncio.sleep(0.005)  # polling a condition, not standing in for one
    return False


async def test_a_claim_racing_a_drain_never_hands_a_task_to_the_draining_worker(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    # The reactor marks w1 terminating and, seeing it hold no task, may terminate its pod
    # at once. A claim that read w1 as 'active' just before must not commit a task to it:
    # the claim waits for the drain and then sees 'terminating'.
    await add_worker(conn, "w1")
    task = await add_task(conn)
    reactor, pod = await connect_many(db_dsn, 2)
    try:
        drain = reactor.transaction()
        await drain.start()
        await reactor.execute("UPDATE workers SET status = 'terminating' WHERE id = 'w1'")
        claiming = asyncio.create_task(claim(pod, "w1"))
        waited = await _waits_for_a_lock(conn, pod.get_server_pid(), claiming)
        await drain.commit()
        assert await asyncio.wait_for(claiming, 5) is None
        assert waited
    finally:
        await close_all([reactor, pod])
    assert (await task_row(conn, task))["status"] == "Queued"


async def test_a_drain_racing_a_claim_waits_and_then_sees_the_task(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    await add_worker(conn, "w1")
    task = await add_task(conn)
    reactor, pod = await connect_many(db_dsn, 2)
    try:
        claiming = pod.transaction()
        await claiming.start()
        assert (await claim(pod, "w1"))["id"] == task  # type: ignore[index]
        draining = asyncio.create_task(
            reactor.execute(
                "UPDATE workers SET status = 'terminating' WHERE id = 'w1' AND status = 'active'"
            )
        )
        assert await _waits_for_a_lock(conn, reactor.get_server_pid(), draining)
        await claiming.commit()
        assert await asyncio.wait_for(draining, 5) == "UPDATE 1"
        held = await reactor.fetchval(
            "SELECT count(*) FROM tasks WHERE status = 'In Progress' AND worker_id = 'w1'"
        )
        assert held == 1
    finally:
        await close_all([reactor, pod])
