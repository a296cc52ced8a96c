"""The heartbeat contract end to end: with GPU_IDLE_TIMEOUT_SEC=6 and every other setting
at its default, a real worker process stays alive through a task longer than the timeout.

Before the reactor told its pods how often to beat, workers beat every 15 s (their
default) and were retired as "heartbeat stale" 6 s into every task.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from reactor.providers.local import LocalProvider
from reactor.settings import Settings
from tests.engine.harness import running
from tests.metrics import metric_value
from tests.util import wait_until

IDLE_TIMEOUT_SEC = 6
TASK_SEC = 10  # longer than the timeout: a worker beating every 15 s would be retired


async def test_a_short_idle_timeout_keeps_healthy_workers_alive_mid_task(
    db_dsn: str, worker_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        DATABASE_URL=db_dsn,
        WORKER_DATABASE_URL=worker_dsn,
        REACTOR_PROVIDER="local",
        GPU_IDLE_TIMEOUT_SEC=IDLE_TIMEOUT_SEC,
        REACTOR_HTTP_PORT=0,
        LOG_FORMAT="text",
    )
    provider = LocalProvider(settings=settings, workdir=tmp_path)
    try:
        async with running(settings, provider=provider) as reactor:
            task_id = await conn.fetchval(
                "INSERT INTO tasks (task_type, params) "
                "VALUES ('sleep', jsonb_build_object('seconds', $1::int)) RETURNING id",
                TASK_SEC,
            )
            worker_id = await wait_until(
                lambda: conn.fetchval(
                    "SELECT worker_id FROM tasks WHERE id = $1 AND status = 'In Progress'",
                    task_id,
                ),
                timeout=60,
                what="a worker on the task",
            )
            [pod] = await provider.list_pods()
            assert pod.env["HEARTBEAT_INTERVAL_SEC"] == "1.5"  # min(15, 6 / 4)
            assert "TASK_TIMEOUT_SEC" not in pod.env  # 3600 fits the default stuck limit
            done = await wait_until(
                lambda: conn.fetchrow(
                    "SELECT status::text AS status, attempts, worker_id FROM tasks "
                    "WHERE id = $1 AND status IN ('Complete', 'Failed')",
                    task_id,
                ),
                timeout=TASK_SEC + 60,
                what="the task done",
            )
            assert (done["status"], done["attempts"], done["worker_id"]) == (
                "Complete",
                1,
                worker_id,
            )
            workers = await conn.fetch("SELECT id, status::text AS status FROM workers")
            assert [(w["id"], w["status"]) for w in workers] == [(worker_id, "active")]
            heartbeats_lost = metric_value(
                reactor.metrics, "gpu_reactor_terminations_total", reason="heartbeat"
            )
            assert heartbeats_lost == 0
    finally:
        await provider.close()
