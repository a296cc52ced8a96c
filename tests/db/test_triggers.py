"""NOTIFY gpu_reactor: the doorbell on the insert path and the low-volume events."""

from __future__ import annotations

import asyncpg

from tests.db.support import Notifications, add_task, add_tasks, add_worker, claim

ARM = "SELECT gpu_reactor.arm()"


async def test_every_payload_is_json_with_an_event(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    await conn.execute(ARM)
    await add_worker(conn, "w1", "spawning")
    await conn.fetchval("SELECT gpu_reactor.func_update_worker_heartbeat('w1', '{}')")
    task = await add_task(conn)
    await claim(conn, "w1")
    await conn.fetchval("SELECT gpu_reactor.func_mark_task_complete($1, '{}', 'w1', 1)", task)
    await conn.execute("UPDATE workers SET status = 'terminating'")
    await conn.fetchval("SELECT gpu_reactor.func_report_worker_drained('w1')")

    events = await listener.take(conn)  # parses every payload as JSON
    assert [e["event"] for e in events] == [
        "worker_status",
        "worker_status",
        "task_queued",
        "task_finished",
        "worker_status",
        "worker_drained",
    ]
    assert all(isinstance(e, dict) for e in events)


async def test_bulk_insert_rings_once_and_later_inserts_stay_silent_until_rearmed(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    await conn.execute(ARM)
    await listener.take(conn)

    await add_tasks(conn, 1000)
    assert await listener.take(conn) == [{"event": "task_queued"}]

    for _ in range(100):
        await add_task(conn)
    assert await listener.take(conn) == []
    assert await conn.fetchval("SELECT armed FROM gpu_reactor.doorbell") is False

    await conn.execute(ARM)
    await add_task(conn)
    await add_task(conn)
    assert await listener.take(conn) == [{"event": "task_queued"}]


async def test_arming_twice_still_rings_once(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    await conn.execute(ARM)
    await conn.execute(ARM)
    await add_task(conn)
    await add_task(conn)
    assert await listener.take(conn) == [{"event": "task_queued"}]


async def test_a_rolled_back_insert_leaves_the_bell_armed(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    await conn.execute(ARM)
    tx = conn.transaction()
    await tx.start()
    await add_task(conn)
    await tx.rollback()
    assert await listener.take(conn) == []
    await add_task(conn)
    assert await listener.take(conn) == [{"event": "task_queued"}]


async def test_a_task_leaving_in_progress_notifies_with_status_and_worker(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    await add_worker(conn, "w1")
    done, failed, requeued, cancelled = [await add_task(conn) for _ in range(4)]
    for _ in range(4):
        await claim(conn, "w1")
    await listener.take(conn)

    await conn.fetchval("SELECT gpu_reactor.func_mark_task_complete($1, '{}', 'w1', 1)", done)
    await conn.fetchval("SELECT gpu_reactor.func_mark_task_failed($1, 'oom', 'w1', 1)", failed)
    await conn.fetch("SELECT * FROM gpu_reactor.func_requeue_task($1, 'w1', 1, 'stuck')", requeued)
    await conn.execute("UPDATE tasks SET status = 'Cancelled' WHERE id = $1", cancelled)
    finished = [e for e in await listener.take(conn) if e["event"] == "task_finished"]
    assert finished == [
        {"event": "task_finished", "status": "Complete", "worker_id": "w1"},
        {"event": "task_finished", "status": "Queued", "worker_id": "w1"},
        {"event": "task_finished", "status": "Queued", "worker_id": "w1"},
        {"event": "task_finished", "status": "Cancelled", "worker_id": "w1"},
    ]


async def test_updates_that_keep_a_task_where_it_is_stay_silent(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    await conn.execute(ARM)
    await add_worker(conn, "w1")
    task = await add_task(conn)
    await claim(conn, "w1")
    queued = await add_task(conn)
    await listener.take(conn)
    await conn.execute("UPDATE tasks SET params = '{\"x\": 1}', priority = 3")
    await conn.execute("UPDATE tasks SET status = 'In Progress' WHERE id = $1", task)
    await conn.execute("UPDATE tasks SET status = 'Queued' WHERE id = $1", queued)
    assert await listener.take(conn) == []


async def test_a_worker_status_change_notifies_and_other_updates_do_not(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    await add_worker(conn, "w1", "spawning")
    assert await listener.take(conn) == [
        {"event": "worker_status", "worker_id": "w1", "status": "spawning"}
    ]

    await conn.execute("UPDATE workers SET last_heartbeat = now(), metadata = '{\"a\": 1}'")
    await conn.execute("UPDATE workers SET status = 'spawning'")
    assert await listener.take(conn) == []

    await conn.execute("UPDATE workers SET status = 'terminating'")
    await conn.execute("UPDATE workers SET status = 'terminated', terminated_at = now()")
    assert await listener.take(conn) == [
        {"event": "worker_status", "worker_id": "w1", "status": "terminating"},
        {"event": "worker_status", "worker_id": "w1", "status": "terminated"},
    ]


async def test_putting_a_task_back_to_queued_rings_the_doorbell(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    failed = await add_task(conn)
    await conn.execute("UPDATE tasks SET status = 'Failed' WHERE id = $1", failed)
    await conn.execute(ARM)
    await listener.take(conn)

    await conn.execute("UPDATE tasks SET status = 'Queued', attempts = 0 WHERE id = $1", failed)
    assert await listener.take(conn) == [{"event": "task_queued"}]


async def test_failed_back_to_queued_rings_an_armed_bell(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    await add_worker(conn, "w1")
    task = await add_task(conn)
    await claim(conn, "w1")
    await conn.execute(ARM)
    await listener.take(conn)
    await conn.fetchval("SELECT gpu_reactor.func_mark_task_failed($1, 'oom', 'w1', 1)", task)
    events = await listener.take(conn)
    assert {"event": "task_queued"} in events


async def test_releasing_a_task_records_when_its_worker_let_go(conn: asyncpg.Connection) -> None:
    await add_worker(conn, "w1")
    await add_worker(conn, "w2")
    done, cancelled = await add_task(conn), await add_task(conn)
    await claim(conn, "w1")
    await claim(conn, "w2")
    last = "SELECT last_task_finished_at FROM workers WHERE id = $1"
    assert await conn.fetchval(last, "w1") is None

    before = await conn.fetchval("SELECT clock_timestamp()")
    await conn.fetchval("SELECT gpu_reactor.func_mark_task_complete($1, '{}', 'w1', 1)", done)
    assert await conn.fetchval(last, "w1") >= before
    assert await conn.fetchval(last, "w2") is None
    await conn.execute("UPDATE tasks SET status = 'Cancelled' WHERE id = $1", cancelled)
    assert await conn.fetchval(last, "w2") >= before
