"""Fenced completion and failure: only the holder of the current attempt changes a task."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.db.support import add_task, add_worker, claim, task_row

COMPLETE = "SELECT gpu_reactor.func_mark_task_complete($1, $2, $3, $4)"
FAIL = "SELECT gpu_reactor.func_mark_task_failed($1, $2, $3, $4)"


async def _claimed_task(
    conn: asyncpg.Connection, worker_id: str = "w1", max_attempts: int = 3
) -> uuid.UUID:
    task = await add_task(conn, max_attempts=max_attempts)
    row = await claim(conn, worker_id)
    assert row is not None and row["id"] == task
    return task


@pytest.fixture
async def workers(conn: asyncpg.Connection) -> None:
    await add_worker(conn, "w1")
    await add_worker(conn, "w2")


@pytest.mark.usefixtures("workers")
async def test_the_holder_completes_its_task(conn: asyncpg.Connection) -> None:
    task = await _claimed_task(conn)
    assert await conn.fetchval(COMPLETE, task, '{"url": "s3://x"}', "w1", 1) is True
    row = await task_row(conn, task)
    assert row["status"] == "Complete"
    assert row["result_data"] == '{"url": "s3://x"}'
    assert row["generation_processed_at"] >= row["generation_started_at"]
    # Without an attempt number the holder is still fenced by status and worker.
    other = await _claimed_task(conn)
    assert await conn.fetchval(COMPLETE, other, None, "w1", None) is True


@pytest.mark.usefixtures("workers")
@pytest.mark.parametrize("call", [COMPLETE, FAIL])
async def test_another_worker_is_refused(conn: asyncpg.Connection, call: str) -> None:
    task = await _claimed_task(conn, "w1")
    before = await task_row(conn, task)
    payload = '{"stolen": true}' if call == COMPLETE else "stolen"
    assert await conn.fetchval(call, task, payload, "w2", 1) is False
    assert await conn.fetchval(call, task, payload, "w2", None) is False
    assert await task_row(conn, task) == before


@pytest.mark.usefixtures("workers")
@pytest.mark.parametrize("call", [COMPLETE, FAIL])
@pytest.mark.parametrize("status", ["Queued", "Complete", "Failed", "Cancelled"])
async def test_a_task_no_longer_in_progress_is_refused(
    conn: asyncpg.Connection, call: str, status: str
) -> None:
    task = await _claimed_task(conn, "w1")
    # Someone else (the reactor, the application) moved it on, keeping the holder's name.
    await conn.execute("UPDATE tasks SET status = $2 WHERE id = $1", task, status)
    before = await task_row(conn, task)
    payload = "{}" if call == COMPLETE else "late"
    assert await conn.fetchval(call, task, payload, "w1", 1) is False
    assert await task_row(conn, task) == before


@pytest.mark.usefixtures("workers")
@pytest.mark.parametrize("call", [COMPLETE, FAIL])
async def test_a_stale_attempt_is_refused(conn: asyncpg.Connection, call: str) -> None:
    # w1 lost the task (say, its heartbeat went stale), it was requeued and w1 itself
    # claimed it again: its late report about attempt 1 must not touch attempt 2.
    task = await _claimed_task(conn, "w1")
    assert (
        await conn.fetchval("SELECT gpu_reactor.func_requeue_task($1, 'w1', 1, 'stuck')", task)
        == "Queued"
    )
    again = await claim(conn, "w1")
    assert again is not None and again["id"] == task and again["attempts"] == 2
    before = await task_row(conn, task)
    payload = "{}" if call == COMPLETE else "late"
    assert await conn.fetchval(call, task, payload, "w1", 1) is False
    assert await task_row(conn, task) == before
    assert await conn.fetchval(call, task, payload, "w1", 2) is True


@pytest.mark.usefixtures("workers")
async def test_completing_twice_is_refused_the_second_time(conn: asyncpg.Connection) -> None:
    task = await _claimed_task(conn)
    assert await conn.fetchval(COMPLETE, task, '{"n": 1}', "w1", 1) is True
    after_first = await task_row(conn, task)
    assert await conn.fetchval(COMPLETE, task, '{"n": 2}', "w1", 1) is False
    assert await conn.fetchval(FAIL, task, "too late", "w1", 1) is False
    assert await task_row(conn, task) == after_first


@pytest.mark.usefixtures("workers")
async def test_failure_requeues_while_attempts_remain_then_fails(conn: asyncpg.Connection) -> None:
    task = await add_task(conn, max_attempts=3)
    for attempt in (1, 2):
        row = await claim(conn, "w1")
        assert row is not None and row["attempts"] == attempt
        assert await conn.fetchval(FAIL, task, f"oom {attempt}", "w1", attempt) is True
        stored = await task_row(conn, task)
        assert (stored["status"], stored["worker_id"]) == ("Queued", None)
        assert stored["error_message"] == f"oom {attempt}"
        assert stored["attempts"] == attempt

    row = await claim(conn, "w2")
    assert row is not None and row["attempts"] == 3
    assert await conn.fetchval(FAIL, task, "oom 3", "w2", 3) is True
    stored = await task_row(conn, task)
    assert (stored["status"], stored["worker_id"], stored["attempts"]) == ("Failed", "w2", 3)
    assert stored["error_message"] == "oom 3"
    assert await claim(conn, "w1") is None


@pytest.mark.usefixtures("workers")
async def test_a_single_attempt_task_fails_at_once(conn: asyncpg.Connection) -> None:
    task = await _claimed_task(conn, max_attempts=1)
    assert await conn.fetchval(FAIL, task, "bad params", "w1", 1) is True
    assert (await task_row(conn, task))["status"] == "Failed"


@pytest.mark.usefixtures("workers")
async def test_a_huge_error_message_is_truncated(conn: asyncpg.Connection) -> None:
    task = await _claimed_task(conn)
    assert await conn.fetchval(FAIL, task, "x" * 100_000, "w1", 1) is True
    assert len((await task_row(conn, task))["error_message"]) == 4000
