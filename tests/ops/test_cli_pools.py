"""`gpu-reactor status`, `workers list` and the dashboard by GPU pool, on real Postgres:
two pools from a POOLS_FILE, and one without it (as before pools, with its name shown)."""

from __future__ import annotations

import asyncio
from io import StringIO
from pathlib import Path

import asyncpg
import orjson
from rich.console import Console

from reactor.db.queries import query
from reactor.ops.dashboard import compute_alerts, export_json, gather, render_frame
from reactor.ops.status import StatusView
from reactor.settings import Settings
from tests.fakes import run_fake_runpod
from tests.fakes.runpod_v2_wire import NO_CAPACITY
from tests.ops.conftest import Cli
from tests.ops.test_cli_ops import runpod_env

POOL_SECRET = "hf_pool_only_secret_7a3e"
POOLS_TOML = f"""
[pools.big]
task_types = ["wan_*"]
runpod_gpu_types = ["NVIDIA H100 80GB HBM3"]
max_active_gpus = 1
tasks_per_gpu_threshold = 2
max_hourly_spend_usd = 6.0
worker_extra_env = {{ HF_TOKEN = "{POOL_SECRET}" }}

[pools.small]
task_types = ["wan_*", "caption"]
runpod_gpu_types = ["NVIDIA GeForce RTX 4090"]
max_active_gpus = 3
"""
ENV = {"GPU_HOURLY_PRICE_USD": "1.0", "MAX_ACTIVE_GPUS": "8", "TASKS_PER_GPU_THRESHOLD": "3"}


async def fleet(conn: asyncpg.Connection) -> None:
    """An active worker in each pool (written as the reactor writes a spawn), and tasks:
    five wan (two fit big, three spill to small), three caption, two no pool runs."""
    for worker_id, cost, pool in (
        ("gpu-reactor-big00001", 2.5, "big"),
        ("gpu-reactor-small001", 0.4, "small"),
    ):
        reason = f"test spawn (env HF_TOKEN={POOL_SECRET})"
        await conn.execute(query("insert_spawn_intent"), worker_id, cost, reason, None, pool)
        await conn.fetchval("SELECT gpu_reactor.func_update_worker_heartbeat($1)", worker_id)
    await conn.execute(
        "INSERT INTO tasks (task_type) SELECT t FROM unnest($1::text[]) AS t",
        ["wan_14b"] * 5 + ["caption"] * 3 + ["mystery"] * 2,
    )


def pools_file(tmp_path: Path) -> Path:
    path = tmp_path / "pools.toml"
    path.write_text(POOLS_TOML)
    return path


async def test_status_by_pool(
    cli: Cli, db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await fleet(conn)
    env = {**ENV, "DATABASE_URL": db_dsn, "POOLS_FILE": str(pools_file(tmp_path))}
    result = await asyncio.to_thread(cli, "status", "--json", **env)
    assert result.code == 0, result.err
    assert POOL_SECRET not in result.text  # a pool's worker_extra_env is scrubbed
    view = StatusView.model_validate_json(result.out)
    big, small = view.pools
    assert (big.name, big.gpu_types, big.max_active_gpus) == ("big", ["NVIDIA H100 80GB HBM3"], 1)
    assert (big.live_workers, big.desired_workers, big.queued, big.spilled_out) == (1, 1, 2, 3)
    assert (big.hourly_burn_usd, big.max_hourly_spend_usd) == (2.5, 6.0)
    assert (small.live_workers, small.queued, small.spilled_in) == (1, 6, 3)
    assert small.queued_by_type == {"caption": 3, "wan_14b": 3}
    assert (view.unrouted.total, view.unrouted.by_type) == (2, {"mystery": 2})
    assert {w.id: w.pool for w in view.workers} == {
        "gpu-reactor-big00001": "big",
        "gpu-reactor-small001": "small",
    }
    assert view.queue is not None and view.queue.desired_workers == 3  # 1 big + 2 small

    table = await asyncio.to_thread(cli, "status", **env)
    assert table.code == 0, table.err
    assert "pools" in table.out and "1/1/1" in table.out and "0/3" in table.out
    assert "pool big: workers (1)" in table.out and "pool small: workers (1)" in table.out
    assert "2 queued task(s) of types no pool runs" in table.out and "2 mystery" in table.out


async def test_workers_list_by_pool(
    cli: Cli, db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await fleet(conn)
    env = {**ENV, "DATABASE_URL": db_dsn, "POOLS_FILE": str(pools_file(tmp_path))}
    listed = await asyncio.to_thread(cli, "workers", "list", "--json", **env)
    assert listed.code == 0, listed.err
    rows = orjson.loads(listed.out)["live"]
    assert {r["worker_id"]: r["pool"] for r in rows} == {
        "gpu-reactor-big00001": "big",
        "gpu-reactor-small001": "small",
    }
    table = await asyncio.to_thread(cli, "workers", "list", **env)
    assert "pool big: live workers (1)" in table.out
    assert "pool small: live workers (1)" in table.out
    assert table.out.index("gpu-reactor-big00001") < table.out.index("pool small")
    # A pool removed from the file: its worker is listed apart, under its old name.
    pools_file(tmp_path).write_text(POOLS_TOML.split("[pools.small]")[0])
    after = await asyncio.to_thread(cli, "workers", "list", "--json", **env)
    moved = {r["worker_id"]: r["pool"] for r in orjson.loads(after.out)["live"]}
    assert moved["gpu-reactor-small001"] == "small"
    table = await asyncio.to_thread(cli, "workers", "list", **env)
    assert "pools no longer in POOLS_FILE (draining): live workers (1)" in table.out


async def test_without_pools_file_status_and_workers_are_as_before(
    cli: Cli, db_dsn: str, conn: asyncpg.Connection
) -> None:
    await fleet(conn)
    env = {**ENV, "DATABASE_URL": db_dsn}
    view = StatusView.model_validate_json(
        (await asyncio.to_thread(cli, "status", "--json", **env)).out
    )
    [only] = view.pools
    assert (only.name, only.live_workers, only.queued) == ("default", 2, 10)
    assert view.queue is not None and (view.queue.claimable, view.queue.demand) == (10, 10)
    assert view.unrouted.total == 0 and {w.pool for w in view.workers} == {"default"}
    table = await asyncio.to_thread(cli, "status", **env)
    assert "pool " not in table.out and "no pool runs" not in table.out
    listed = await asyncio.to_thread(cli, "workers", "list", **env)
    assert "live workers (2)" in listed.out and "pool " not in listed.out
    rows = orjson.loads((await asyncio.to_thread(cli, "workers", "list", "--json", **env)).out)
    assert {r["pool"] for r in rows["live"]} == {"default"}


async def test_the_dashboard_has_a_line_per_pool(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await fleet(conn)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        DATABASE_URL=db_dsn,
        POOLS_FILE=str(pools_file(tmp_path)),
        **ENV,
    )
    data = await gather(conn, settings)
    alerts = compute_alerts(data)
    assert "unrouted_tasks" in {a.name for a in alerts}
    console = Console(file=StringIO(), width=200, record=True, color_system=None)
    console.print(render_frame(data))
    text = console.export_text()
    assert "pools (2)" in text
    assert (
        "big: 1 live / 1 desired / 1 max; demand 2, 2 queued, 3 spilled on; $2.50/h of $6.00"
        in text
    )
    assert "small: 1 live / 2 desired / 3 max; demand 6, 6 queued, 3 spilled in; $0.40/h" in text
    assert "2 queued task(s) of types no pool runs (nothing is spawned): 2 mystery" in text
    exported = orjson.loads(export_json(data))
    assert [p["name"] for p in exported["pools"]] == ["big", "small"]
    assert exported["unrouted"] == {"total": 2, "by_type": {"mystery": 2}}

    single = await gather(conn, Settings(_env_file=None, DATABASE_URL=db_dsn, **ENV))  # type: ignore[call-arg]
    assert single.pools == [] and single.unrouted.total == 0
    console = Console(file=StringIO(), width=200, record=True, color_system=None)
    console.print(render_frame(single))
    assert "pools (" not in console.export_text()


async def test_spawn_in_a_pool_scrubs_the_pools_secret_from_a_refusal_that_quotes_it(
    cli: Cli, db_dsn: str, worker_dsn: str, tmp_path: Path
) -> None:
    """A provider may quote the create body (the pod's env) in an error: the pool's own
    worker_extra_env secret is scrubbed from what `workers spawn --pool` prints."""
    async with run_fake_runpod() as runpod:
        runpod.faults.fail_next(1, status=400, method="POST", path="/pods")
        detail = f"{NO_CAPACITY} (env HF_TOKEN={POOL_SECRET})"
        runpod.faults.corrupt_next(
            1, method="POST", path="/pods", kind=orjson.dumps({"status": 400, "detail": detail})
        )
        env = runpod_env(runpod, db_dsn, worker_dsn, POOLS_FILE=str(pools_file(tmp_path)))
        result = await asyncio.to_thread(cli, "workers", "spawn", "--pool", "big", **env)
        assert [c.status for c in runpod.create_calls] == [400], result.text
        assert NO_CAPACITY in result.text  # the refusal is shown
        assert POOL_SECRET not in result.text
