"""A task its processor failed waits before its next attempt (0013)."""

from __future__ import annotations

import datetime as dt

import asyncpg

from reactor.engine.service import Reactor
from reactor.engine.snapshot import read_snapshot
from tests.db.support import add_task, add_worker, claim, task_row
from tests.engine.harness import runpod_settings
from tests.fakes import run_fake_runpod

FAIL = "SELECT gpu_reactor.func_mark_task_failed($1, 'CUDA out of memory', $2, $3)"


async def _set_delay(conn: asyncpg.Connection, seconds: int) -> None:
    await conn.execute("UPDATE gpu_reactor.settings SET task_retry_delay_sec = $1", seconds)


async def _wait_left(conn: asyncpg.Connection, task: object) -> float:
    """Seconds until the task's retry_at, by the database's clock."""
    return float(
        await conn.fetchval(
            "SELECT extract(epoch FROM retry_at - now()) FROM tasks WHERE id = $1", task
        )
    )


async def _make_due(conn: asyncpg.Connection, task: object) -> None:
    await conn.execute(
        "UPDATE tasks SET retry_at = now() - interval '1 second' WHERE id = $1", task
    )


async def test_a_failed_task_waits_doubling_per_attempt_then_fails_for_good(
    conn: asyncpg.Connection,
) -> None:
    await _set_delay(conn, 30)
    await add_worker(conn, "w1")
    task = await add_task(conn, max_attempts=3)

    assert (await claim(conn, "w1"))["attempts"] == 1  # type: ignore[index]
    assert await conn.fetchval(FAIL, task, "w1", 1)
    row = await task_row(conn, task)
    assert (row["status"], row["worker_id"]) == ("Queued", None)
    assert 28 < await _wait_left(conn, task) <= 30
    assert await claim(conn, "w1") is None, "claimed before its retry_at"

    await _make_due(conn, task)
    again = await claim(conn, "w1")
    assert again is not None and again["attempts"] == 2
    assert (await task_row(conn, task))["retry_at"] is None
    assert await conn.fetchval(FAIL, task, "w1", 2)
    assert 58 < await _wait_left(conn, task) <= 60

    await _make_due(conn, task)
    assert (await claim(conn, "w1"))["attempts"] == 3  # type: ignore[index]
    assert await conn.fetchval(FAIL, task, "w1", 3)
    row = await task_row(conn, task)
    assert (row["status"], row["retry_at"], row["error_message"]) == (
        "Failed",
        None,
        "CUDA out of memory",
    )


async def test_a_waiting_task_does_not_hold_up_the_queue_behind_it(
    conn: asyncpg.Connection,
) -> None:
    await _set_delay(conn, 30)
    await add_worker(conn, "w1")
    urgent = await add_task(conn, priority=10)
    assert (await claim(conn, "w1"))["id"] == urgent  # type: ignore[index]
    assert await conn.fetchval(FAIL, urgent, "w1", 1)
    later = await add_task(conn, priority=0)
    assert (await claim(conn, "w1"))["id"] == later  # type: ignore[index]


async def test_the_delay_is_capped_at_an_hour(conn: asyncpg.Connection) -> None:
    await _set_delay(conn, 3600)
    await add_worker(conn, "w1")
    task = await add_task(conn, max_attempts=5)
    await conn.execute("UPDATE tasks SET attempts = 3 WHERE id = $1", task)
    assert (await claim(conn, "w1"))["attempts"] == 4  # type: ignore[index]
    assert await conn.fetchval(FAIL, task, "w1", 4)
    assert 3590 < await _wait_left(conn, task) <= 3600


async def test_requeues_that_are_not_the_tasks_fault_are_immediate(
    conn: asyncpg.Connection,
) -> None:
    await _set_delay(conn, 30)
    await add_worker(conn, "w1")
    await add_worker(conn, "w2")
    stuck, orphaned = await add_task(conn), await add_task(conn)
    await claim(conn, "w1")
    await claim(conn, "w2")
    await conn.fetch("SELECT * FROM gpu_reactor.func_requeue_task($1, 'w1', 1, 'stuck')", stuck)
    await conn.fetch("SELECT * FROM gpu_reactor.func_reset_orphaned_tasks(ARRAY['w2'])")
    for task in (stuck, orphaned):
        row = await task_row(conn, task)
        assert (row["status"], row["retry_at"]) == ("Queued", None)
    claimed = {(await claim(conn, "w1"))["id"], (await claim(conn, "w2"))["id"]}  # type: ignore[index]
    assert claimed == {stuck, orphaned}


async def test_no_delay_until_a_reactor_sets_one(conn: asyncpg.Connection) -> None:
    await add_worker(conn, "w1")
    task = await add_task(conn)
    await claim(conn, "w1")
    assert await conn.fetchval(FAIL, task, "w1", 1)
    assert (await task_row(conn, task))["retry_at"] is None
    assert (await claim(conn, "w1"))["id"] == task  # type: ignore[index]


async def test_the_reactor_writes_its_retry_delay_at_start(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    async with run_fake_runpod() as runpod:
        reactor = Reactor(runpod_settings(db_dsn, runpod, TASK_RETRY_DELAY_SEC=2.5))
        await reactor.open()
        await reactor.close()
    assert await conn.fetchval("SELECT task_retry_delay_sec FROM gpu_reactor.settings") == 3
    await add_worker(conn, "w1")
    task = await add_task(conn)
    await claim(conn, "w1")
    before = await conn.fetchval("SELECT now()")
    assert await conn.fetchval(FAIL, task, "w1", 1)
    retry_at = (await task_row(conn, task))["retry_at"]
    assert retry_at - before >= dt.timedelta(seconds=2.9)


async def test_the_snapshot_counts_waiting_tasks_and_when_the_next_is_due(
    conn: asyncpg.Connection,
) -> None:
    await _set_delay(conn, 30)
    await add_worker(conn, "w1")
    failing, other = await add_task(conn, priority=1), await add_task(conn)
    await claim(conn, "w1")
    assert await conn.fetchval(FAIL, failing, "w1", 1)
    snap = await read_snapshot(conn, arm=False)
    retry_at = (await task_row(conn, failing))["retry_at"]
    assert (snap.queued, snap.waiting, snap.demand, snap.next_retry_at) == (2, 1, 1, retry_at)
    await _make_due(conn, failing)
    snap = await read_snapshot(conn, arm=False)
    assert (snap.queued, snap.waiting, snap.demand, snap.next_retry_at) == (2, 0, 2, None)
    assert other
