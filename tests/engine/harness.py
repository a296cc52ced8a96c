"""Run real reactors against the test database and the fake Runpod v2 server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from reactor.engine.service import Reactor
from reactor.providers.base import Provider
from reactor.settings import Settings
from tests.fakes.runpod_v2 import FakeRunpod
from tests.util import wait_until

GPU = "NVIDIA GeForce RTX 4090"


def runpod_settings(db_dsn: str, runpod: FakeRunpod, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        DATABASE_URL=db_dsn,
        WORKER_DATABASE_URL=db_dsn,
        REACTOR_PROVIDER="runpod",
        RUNPOD_API_URL=runpod.url,
        RUNPOD_API_KEY=runpod.api_key,
        RUNPOD_GPU_TYPES=GPU,
        MIN_ACTIVE_GPUS=0,
        MAX_ACTIVE_GPUS=3,
        TASKS_PER_GPU_THRESHOLD=1,
        GPU_IDLE_TIMEOUT_SEC=30,
        SWEEP_INTERVAL_SEC=60,
        LISTENER_CHECK_INTERVAL_SEC=1,
        SCALE_DOWN_IDLE_SEC=300,
        REACTOR_HTTP_PORT=0,
        LOG_FORMAT="text",
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, lead: bool = True, provider: Provider | None = None
) -> AsyncIterator[Reactor]:
    """A reactor running in this event loop; stopped (SIGTERM path) on exit."""
    reactor = Reactor(settings, provider=provider)
    task = asyncio.create_task(reactor.run(), name="reactor-under-test")

    def ready() -> bool:
        if task.done():
            task.result()  # surface the crash
        if not lead:
            return reactor.state.role in ("standby", "leader")
        # Leading, reconciled once, and LISTENing: a NOTIFY sent from here on is heard.
        state = reactor.state
        return state.role == "leader" and state.reconciles > 0 and state.listener.connected

    try:
        await wait_until(ready, timeout=15, what="reactor ready")
        reactor.task = task  # type: ignore[attr-defined]
        yield reactor
    finally:
        reactor.stop_event.set()
        await asyncio.wait_for(task, 30)


async def insert_tasks(conn: asyncpg.Connection, count: int, task_type: str = "echo") -> None:
    await conn.execute(
        "INSERT INTO tasks (task_type, params) SELECT $1, jsonb_build_object('i', g) "
        "FROM generate_series(1, $2) g",
        task_type,
        count,
    )
