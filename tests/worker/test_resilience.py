"""Lost connections and a restarted Postgres cost time, never a task or a result."""

from __future__ import annotations

import asyncpg
import pytest

from tests.pg import WORKER_LOGIN, PgServer
from tests.worker.helpers import queue, wait_status, wait_until
from tests.worker.procs import WorkerProcs


async def terminate_worker_backends(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE usename = $1 AND datname = current_database()",
        WORKER_LOGIN,
    )


async def test_connections_killed_mid_task_are_reopened_and_the_result_recorded(
    conn: asyncpg.Connection, worker_procs: WorkerProcs
) -> None:
    running = await queue(conn, "sleep", {"seconds": 1})
    (worker,) = worker_procs.start()
    await wait_status(conn, running, "In Progress")
    await worker.wait_for_event("listener_connected")
    assert await terminate_worker_backends(conn) == 3  # claim, heartbeat, listen

    done = await wait_status(conn, running, "Complete", timeout=10)
    assert (done["attempts"], done["result"]) == (1, {"slept": 1})
    await worker.wait_for_event("listener_lost")
    # LISTEN is back: an idle worker with a long poll still wakes for a new task.
    await wait_until(lambda: _listener_count(conn), what="LISTEN to be re-established")
    after = await queue(conn, "echo", {"n": 1})
    await wait_status(conn, after, "Complete", timeout=5)
    assert worker_procs.stop_all() == {worker.worker_id: 0}


async def _listener_count(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 "
            "AND datname = current_database() AND application_name LIKE 'gpu-worker listen%'",
            WORKER_LOGIN,
        )
    )


async def test_a_result_finished_while_postgres_is_down_is_recorded_once_it_is_back(
    pg_server: PgServer, db_dsn: str, worker_procs: WorkerProcs
) -> None:
    if not pg_server.restartable:
        pytest.skip("needs the embedded PostgreSQL to stop and start it")
    embedded = pg_server.embedded
    assert embedded is not None
    conn = await asyncpg.connect(db_dsn)
    try:
        running = await queue(conn, "sleep", {"seconds": 1.5})
        (worker,) = worker_procs.start()
        await wait_status(conn, running, "In Progress")
    finally:
        await conn.close()

    embedded.stop()
    try:
        # The task ends while the database is down: the completion is retried...
        await worker.wait_for_event("outcome_retry", timeout=10)
        await worker.wait_for_event("heartbeat_failed", timeout=10)
    finally:
        embedded.start()

    # ... and lands once Postgres is back; the worker then carries on.
    conn = await asyncpg.connect(db_dsn)
    try:
        done = await wait_status(conn, running, "Complete", timeout=15)
        assert (done["attempts"], done["worker_id"], done["result"]) == (
            1,
            worker.worker_id,
            {"slept": 1.5},
        )
        after = await queue(conn, "echo", {"n": 2})
        assert (await wait_status(conn, after, "Complete", timeout=10))["result"] == {"n": 2}
    finally:
        await conn.close()
    await worker.wait_for_event("heartbeat_restored")
    assert worker_procs.stop_all() == {worker.worker_id: 0}
