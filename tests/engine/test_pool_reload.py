"""A pool's spawn gate is tuned by the pool's own settings (its fixed GPU price, its
backoff, its start-up pause), from the start and after a reload that changes them. Real
Postgres, the fake Runpod (whose RTX 4090 lists at 0.69 USD/h)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from reactor.engine.service import Reactor
from tests.engine.harness import insert_tasks, running, runpod_settings
from tests.fakes.runpod_v2 import FakeRunpod, run_fake_runpod
from tests.util import wait_until

POOL = """
[pools.a]
task_types = ["*"]
max_active_gpus = 5
max_hourly_spend_usd = 3.0
gpu_hourly_price_usd = {price}
"""


async def spawns_for(reactor: Reactor, runpod: FakeRunpod, conn: asyncpg.Connection) -> int:
    """Queue 5 tasks (5 workers' worth) and count the creates once the reactor settled."""
    await insert_tasks(conn, 5)
    await wait_until(lambda: runpod.create_calls, timeout=10, what="a create")
    seen = reactor.state.reconciles
    await conn.execute("SELECT pg_notify('gpu_reactor', '{\"event\":\"sweep\"}')")
    await wait_until(lambda: reactor.state.reconciles > seen, timeout=10, what="a sweep")
    return len(runpod.create_calls)


async def test_the_first_pools_own_gpu_price_is_in_force_from_the_start(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "pools.toml"
    path.write_text(POOL.format(price=3.0))  # the environment's GPU_HOURLY_PRICE_USD is 0
    async with run_fake_runpod() as runpod:
        settings = runpod_settings(db_dsn, runpod, POOLS_FILE=str(path), MAX_ACTIVE_GPUS=5)
        async with running(settings) as reactor:
            assert reactor.state.gates["a"].expected_price == 3.0  # what /status shows
            assert await spawns_for(reactor, runpod, conn) == 1, "3 USD/h affords one at 3"


async def test_a_reload_that_changes_a_pools_gpu_price_budgets_at_the_new_price(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "pools.toml"
    path.write_text(POOL.format(price=1.0))
    async with run_fake_runpod() as runpod:
        settings = runpod_settings(db_dsn, runpod, POOLS_FILE=str(path), MAX_ACTIVE_GPUS=5)
        async with running(settings) as reactor:
            assert reactor.state.gates["a"].expected_price == 1.0
            path.write_text(POOL.format(price=3.0))  # one worker is the whole budget now
            before = reactor.state.reconciles
            assert reactor.reload()
            await wait_until(lambda: reactor.state.reconciles > before, timeout=10)
            assert reactor.state.gates["a"].expected_price == 3.0
            assert await spawns_for(reactor, runpod, conn) == 1, "3 USD/h affords one at 3"
