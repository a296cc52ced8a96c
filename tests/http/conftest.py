"""A real Reactor (local provider, real Postgres) serving its HTTP surface."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from reactor.db.embedded import free_port
from reactor.engine.service import Reactor
from reactor.http.server import start_http
from reactor.settings import Settings
from tests.util import wait_until

TOKEN = "status-token-4f1c9a"
API_KEY = "rpa_secret_key_7d2e41"
EXTRA_SECRET = "hf_extra_secret_93ab"
STAND_IN = f'{sys.executable} -c "import time; time.sleep(30)"'


def reactor_settings(db_dsn: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": db_dsn,
        "REACTOR_PROVIDER": "local",
        "LOCAL_WORKER_COMMAND": STAND_IN,
        "REACTOR_HTTP_HOST": "127.0.0.1",
        "REACTOR_HTTP_PORT": free_port(),
        "REACTOR_HTTP_TOKEN": TOKEN,
        "RUNPOD_API_KEY": API_KEY,
        "WORKER_EXTRA_ENV": {"HF_TOKEN": EXTRA_SECRET},
        "MAX_ACTIVE_GPUS": 2,
        "TASKS_PER_GPU_THRESHOLD": 3,
        "GPU_HOURLY_PRICE_USD": 1.5,
        "MAX_HOURLY_SPEND_USD": 10,
        "LISTENER_CHECK_INTERVAL_SEC": 1,
        "SWEEP_INTERVAL_SEC": 30,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def serving(settings: Settings, *, lead: bool = True) -> AsyncIterator[Reactor]:
    """Run ``reactor.run()`` and its HTTP server; stop both, always."""
    reactor = Reactor(settings)
    runner = await start_http(reactor)
    task = asyncio.create_task(reactor.run(), name="reactor-under-test")
    try:
        if lead:
            await wait_until(
                lambda: (
                    (
                        reactor.state.role == "leader"
                        and reactor.state.listener.connected
                        and reactor.state.reconciles > 0
                    )
                    or task.done()
                ),
                timeout=15,
                what="the reactor to lead",
            )
        else:
            await wait_until(
                lambda: reactor.state.role == "standby" or task.done(),
                timeout=15,
                what="the reactor to stand by",
            )
        if task.done():
            task.result()  # raise what killed it
        yield reactor
    finally:
        reactor.stop_event.set()
        try:
            await asyncio.wait_for(task, 20)
        finally:
            await runner.cleanup()


def base_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.reactor_http_port}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session
