"""The reactor's requeues: gpu_reactor.func_reset_orphaned_tasks and
gpu_reactor.func_requeue_task."""

from __future__ import annotations

import uuid

import asyncpg

from tests.db.support import add_task, add_worker, claim, task_row

RESET = "SELECT task_id, new_status FROM gpu_reactor.func_reset_orphaned_tasks($1::text[])"
REQUEUE = "SELECT gpu_reactor.func_requeue_task($1, $2, $3, $4)"


async def _held_by(conn: asyncpg.Connection, worker_id: str, max_attempts: int = 3) -> uuid.UUID:
    task = await add_task(conn, max_attempts=max_attempts)
    row = await claim(conn, worker_id)
    assert row is not None and row["id"] == task
    return task


async def test_reset_requeues_the_lost_workers_tasks_counting_the_attempt(
    conn: asyncpg.Connection,
) -> None:
    for worker in ("lost1", "lost2", "alive"):
        await add_worker(conn, worker)
    lost1 = await _held_by(conn, "lost1")
    lost2 = await _held_by(conn, "lost2")
    alive = await _held_by(conn, "alive")
    queued = await add_task(conn)
    untouched = {t: await task_row(conn, t) for t in (alive, queued)}

    rows = await conn.fetch(RESET, ["lost1", "lost2", "never-existed"])
    assert sorted((r["task_id"], r["new_status"]) for r in rows) == sorted(
        [(lost1, "Queued"), (lost2, "Queued")]
    )
    for task, worker in ((lost1, "lost1"), (lost2, "lost2")):
        row = await task_row(conn, task)
        assert (row["status"], row["worker_id"], row["attempts"]) == ("Queued", None, 1)
        assert worker in row["error_message"] and "attempt 1" in row["error_message"]
    for task, before in untouched.items():
        assert await task_row(conn, task) == before


async def test_a_task_that_kills_every_worker_ends_failed(conn: asyncpg.Connection) -> None:
    task = await add_task(conn, max_attempts=3)
    for attempt in (1, 2, 3):
        await add_worker(conn, f"w{attempt}")
        row = await claim(conn, f"w{attempt}")
        assert row is not None and row["id"] == task and row["attempts"] == attempt
        rows = await conn.fetch(RESET, [f"w{attempt}"])
        expected = "Queued" if attempt < 3 else "Failed"
        assert [(r["task_id"], r["new_status"]) for r in rows] == [(task, expected)]

    row = await task_row(conn, task)
    assert (row["status"], row["attempts"], row["worker_id"]) == ("Failed", 3, "w3")
    assert row["error_message"] == "worker w3 was lost during attempt 3 of 3; no attempts left"
    await add_worker(conn, "w4")
    assert await claim(conn, "w4") is None


async def test_reset_with_nothing_to_do_returns_nothing(conn: asyncpg.Connection) -> None:
    await add_worker(conn, "w1")
    await add_task(conn)
    assert await conn.fetch(RESET, ["w1"]) == []
    assert await conn.fetch(RESET, []) == []


async def test_requeue_is_fenced_by_holder_and_attempt(conn: asyncpg.Connection) -> None:
    await add_worker(conn, "w1")
    task = await _held_by(conn, "w1")
    before = await task_row(conn, task)
    assert await conn.fetchval(REQUEUE, task, "w2", 1, "stuck") is None
    assert await conn.fetchval(REQUEUE, task, "w1", 2, "stuck") is None
    assert await conn.fetchval(REQUEUE, uuid.uuid4(), "w1", 1, "stuck") is None
    assert await task_row(conn, task) == before

    assert await conn.fetchval(REQUEUE, task, "w1", 1, "stuck for 3600 s") == "Queued"
    row = await task_row(conn, task)
    assert (row["status"], row["worker_id"], row["attempts"]) == ("Queued", None, 1)
    assert row["error_message"] == "stuck for 3600 s"
    # Already requeued: a second (late) requeue of the same attempt changes nothing.
    assert await conn.fetchval(REQUEUE, task, "w1", 1, "stuck") is None


async def test_requeue_past_max_attempts_fails_the_task(conn: asyncpg.Connection) -> None:
    await add_worker(conn, "w1")
    task = await _held_by(conn, "w1", max_attempts=1)
    assert await conn.fetchval(REQUEUE, task, "w1", 1, "stuck for 3600 s") == "Failed"
    row = await task_row(conn, task)
    assert row["status"] == "Failed"
    assert row["error_message"] == "stuck for 3600 s; no attempts left"


async def test_a_task_whose_claims_count_no_attempt_still_fails_after_max_attempts_losses(
    conn: asyncpg.Connection,
) -> None:
    # The seed's claim sets In Progress and the worker, and leaves attempts at 0: the
    # attempts gpu-reactor saw lost are what stops a task that kills every worker.
    task = await add_task(conn, max_attempts=3)
    seed_claim = (
        "UPDATE public.tasks SET status = 'In Progress', worker_id = $2,"
        " generation_started_at = now() WHERE id = $1"
    )
    statuses = []
    for n in range(3):
        await conn.execute(seed_claim, task, f"seed-{n}")
        [row] = await conn.fetch(RESET, [f"seed-{n}"])
        statuses.append(row["new_status"])
    assert statuses == ["Queued", "Queued", "Failed"]
    row = await task_row(conn, task)
    assert row["attempts"] == 0
    assert row["error_message"] == "worker seed-2 was lost during attempt 3 of 3; no attempts left"
