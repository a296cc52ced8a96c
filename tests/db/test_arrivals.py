"""The break-even rule's arrival rate as the snapshot reads it (query recent_arrivals)."""

from __future__ import annotations

import datetime as dt

import asyncpg

from reactor.db.queries import query
from reactor.domain.breakeven import ARRIVAL_WINDOW_SEC
from reactor.engine.snapshot import read_snapshot
from tests.db.support import add_task, add_worker, claim

WINDOW = dt.timedelta(seconds=ARRIVAL_WINDOW_SEC)


async def test_the_snapshot_counts_the_tasks_inserted_in_the_window(
    conn: asyncpg.Connection,
) -> None:
    assert (await read_snapshot(conn)).arrivals == 0
    now = await conn.fetchval("SELECT now()")
    # Inserted before the window, then touched inside it (a claim): not an arrival.
    old = now - WINDOW - dt.timedelta(seconds=60)
    await add_task(conn, created_at=old, updated_at=old)
    await add_worker(conn, "w1")
    assert await claim(conn, "w1") is not None
    inside = now - WINDOW / 2
    await add_task(conn, created_at=inside, updated_at=inside)
    await add_task(conn, task_type="upscale")
    await add_task(conn)

    snap = await read_snapshot(conn)
    assert (snap.arrivals, snap.arrivals_since) == (3, inside)
    only = await read_snapshot(conn, task_types=["upscale"])
    assert only.arrivals == 1 and only.arrivals_since is not None
    assert only.arrivals_since > inside
    assert (await read_snapshot(conn, task_types=["ups*"])).arrivals == 1  # globs, as claimed
    assert (await read_snapshot(conn, task_types=["up_cale"])).arrivals == 0  # "_" is literal


async def test_a_mass_update_costs_a_bounded_read(conn: asyncpg.Connection) -> None:
    # Every row touched in the window: only the most recently touched ones are read.
    old = await conn.fetchval("SELECT now() - interval '1 day'")
    for _ in range(3):
        await add_task(conn, created_at=old, updated_at=old)
    await add_task(conn)
    await conn.execute("UPDATE tasks SET priority = 1 WHERE created_at = $1", old)
    read = await conn.fetchrow(query("recent_arrivals"), ARRIVAL_WINDOW_SEC, None, 2)
    assert read["arrivals"] <= 1  # a lower bound: keeps fewer idle workers, never more
    whole = await conn.fetchrow(query("recent_arrivals"), ARRIVAL_WINDOW_SEC, None, 100)
    assert whole["arrivals"] == 1
