"""Demand is what a worker could claim now: the snapshot's counts, and DEMAND_SQL."""

from __future__ import annotations

import asyncpg
import pytest

from reactor.engine.demand import DemandReader
from reactor.engine.snapshot import read_snapshot
from reactor.errors import ConfigError

CLAIM = "SELECT id FROM gpu_reactor.func_claim_available_task($1, $2)"


async def _task(
    conn: asyncpg.Connection, task_type: str, status: str = "Queued", deps: list[str] | None = None
) -> str:
    return str(
        await conn.fetchval(
            "INSERT INTO public.tasks (task_type, status, dependant_on) VALUES ($1, $2, $3)"
            " RETURNING id",
            task_type,
            status,
            deps,
        )
    )


async def test_demand_counts_what_a_worker_could_claim_and_says_why_the_rest_waits(
    conn: asyncpg.Connection,
) -> None:
    ready = await _task(conn, "render")
    await _task(conn, "render", deps=[ready])  # waits for ready
    failed = await _task(conn, "render", status="Failed")
    await _task(conn, "render", deps=[failed])  # never
    await _task(conn, "render", deps=["00000000-0000-0000-0000-000000000000"])  # never
    await _task(conn, "caption")  # not run by this fleet
    snap = await read_snapshot(conn, task_types=["render"])
    assert (snap.queued, snap.claimable, snap.demand) == (5, 1, 1)
    assert (snap.blocked_waiting, snap.blocked_for_good, snap.other_types) == (1, 2, 1)
    # The claim applies the same rule: the one claimable task, then nothing.
    await conn.execute("INSERT INTO public.workers (id, status) VALUES ('w1', 'active')")
    assert str(await conn.fetchval(CLAIM, "w1", ["render"])) == ready
    assert await conn.fetchval(CLAIM, "w1", ["render"]) is None
    every_type = await read_snapshot(conn)
    assert (every_type.other_types, every_type.claimable) == (0, 1)  # the caption


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 1, 2", "DEMAND_SQL answered 2 columns, not one value"),
        ("SELECT 1 UNION ALL SELECT 2", "DEMAND_SQL answered 2 rows, not one value"),
        ("SELECT -3", "DEMAND_SQL answered -3, not a non-negative integer"),
        ("SELECT 'many'", "DEMAND_SQL answered 'many', not a non-negative integer"),
        ("SELECT nope()", "DEMAND_SQL failed: UndefinedFunctionError"),
        ("DELETE FROM public.tasks RETURNING 1", "DEMAND_SQL failed: ReadOnlySQLTransaction"),
    ],
)
async def test_a_demand_sql_that_does_not_work_stops_start_up_with_one_line(
    conn: asyncpg.Connection, sql: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        await DemandReader(sql).check(conn)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


async def test_at_run_time_a_failing_demand_sql_keeps_the_last_good_value(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("CREATE TABLE app_demand (n bigint)")
    await conn.execute("INSERT INTO app_demand VALUES (7)")
    errors: list[int] = []
    demand = DemandReader("SELECT n FROM app_demand", lambda: errors.append(1))
    await demand.check(conn)
    await _task(conn, "render")
    assert (await read_snapshot(conn, demand=demand)).demand == 7
    await conn.execute("UPDATE app_demand SET n = 2")
    assert (await read_snapshot(conn, demand=demand)).demand == 2
    await conn.execute("ALTER TABLE app_demand RENAME TO gone")
    snap = await read_snapshot(conn, demand=demand)
    assert snap.demand == 2 and errors == [1]
    assert demand.last_error is not None and "UndefinedTable" in demand.last_error
    assert snap.workers == () and snap.queued == 1  # the rest of the snapshot is whole
