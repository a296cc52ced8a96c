"""The break-even rule's arrival rate as the snapshot reads it (query recent_arrivals)."""

from __future__ import annotations

import datetime as dt

import asyncpg

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
