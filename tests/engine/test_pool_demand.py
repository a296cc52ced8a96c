"""A pool's own demand query (demand_sql in POOLS_FILE): its answer is the pool's demand,
read in each snapshot; one that does not work stops start-up naming the pool. Real
Postgres, the fake Runpod."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from reactor.engine.service import Reactor
from reactor.errors import ConfigError
from tests.engine.harness import insert_tasks, runpod_settings
from tests.fakes.runpod_v2 import run_fake_runpod

POOLS = """
[pools.video]
task_types = ["video_*"]
runpod_gpu_types = ["NVIDIA H100 80GB HBM3"]
demand_sql = "{sql}"

[pools.small]
task_types = ["*"]
"""


async def test_a_pools_demand_query_is_its_demand(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    # The app's rule, here: only tasks whose params say "paid" need a GPU.
    sql = "SELECT count(*)::int FROM tasks WHERE task_type LIKE 'video%' AND params ? 'paid'"
    path = tmp_path / "pools.toml"
    path.write_text(POOLS.format(sql=sql))
    async with run_fake_runpod() as runpod:
        settings = runpod_settings(db_dsn, runpod, POOLS_FILE=str(path), MAX_ACTIVE_GPUS=6)
        reactor = Reactor(settings)
        await reactor.open()
        try:
            await insert_tasks(conn, 3, task_type="video_wan")  # not paid: no GPU
            await conn.execute(
                "INSERT INTO tasks (task_type, params) VALUES ('video_wan', '{\"paid\": 1}')"
            )
            await insert_tasks(conn, 2, task_type="caption")
            result = await reactor.reconcile(full=False)
            assert result.pool_desired == {"video": 1, "small": 2}
            gpus = sorted(c.body["gpu"]["id"] for c in runpod.create_calls)
            assert gpus == ["NVIDIA GeForce RTX 4090"] * 2 + ["NVIDIA H100 80GB HBM3"]
        finally:
            await reactor.close()


async def test_a_pools_demand_query_that_fails_stops_start_up_naming_the_pool(
    db_dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "pools.toml"
    path.write_text(POOLS.format(sql="SELECT no_such_column FROM tasks"))
    async with run_fake_runpod() as runpod:
        reactor = Reactor(runpod_settings(db_dsn, runpod, POOLS_FILE=str(path)))
        try:
            with pytest.raises(ConfigError) as caught:
                await reactor.open()
        finally:
            await reactor.close()
    line = str(caught.value)
    assert line.startswith("pool 'video': demand_sql failed: ") and "\n" not in line
