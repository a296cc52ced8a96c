"""Every background task of the reactor is owned: a leadership term ends its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

import reactor.engine.service
from tests.engine.harness import running, runpod_settings
from tests.fakes.runpod_v2 import FakeRunpod, run_fake_runpod
from tests.util import wait_until

KILL_LEADER = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE application_name = 'gpu-reactor-leader' AND datname = current_database()"
)


@pytest.fixture
async def runpod() -> AsyncIterator[FakeRunpod]:
    async with run_fake_runpod() as server:
        yield server


async def test_a_drain_check_in_flight_ends_with_the_term_that_heard_it(
    db_dsn: str, conn: asyncpg.Connection, runpod: FakeRunpod, monkeypatch: pytest.MonkeyPatch
) -> None:
    checking = asyncio.Event()

    async def never_answers(pool: object, sender_pid: int | None) -> str | None:
        checking.set()  # a sender check stuck on its query, say
        await asyncio.Event().wait()
        return None

    monkeypatch.setattr(reactor.engine.service, "drain_refusal", never_answers)
    async with running(runpod_settings(db_dsn, runpod)) as service:
        listener = service.state.listener
        await wait_until(lambda: listener.connected, timeout=15, what="the listener")
        await conn.execute("""NOTIFY gpu_reactor, '{"event":"drain","worker_id":"w-1"}'""")
        await wait_until(checking.is_set, timeout=15, what="a drain check in flight")
        [check] = [t for t in asyncio.all_tasks() if t.get_name() == "drain-check-w-1"]
        assert await conn.fetchval(KILL_LEADER) == 1
        await wait_until(check.done, timeout=15, what="the check to end with its term")
        assert check.cancelled()
        await wait_until(
            lambda: service.state.role == "leader", timeout=30, what="the reactor leads again"
        )
        assert [t for t in asyncio.all_tasks() if t.get_name().startswith("drain-check")] == []
